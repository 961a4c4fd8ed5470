//! CART decision trees with scikit-learn's rules, defaults and answers.
//!
//! [`DecisionTreeClassifierParams`] and [`DecisionTreeRegressorParams`] carry scikit-learn's
//! hyperparameters (criterion, splitter, max_depth, min_samples_split, min_samples_leaf,
//! min_weight_fraction_leaf, max_features, max_leaf_nodes, min_impurity_decrease, class_weight,
//! ccp_alpha, seed = random_state) and fit a [`DecisionTreeClassifier`] or
//! [`DecisionTreeRegressor`]. The fitted tree is a set of flat arrays ([`TreeArrays`], like
//! `tree_`), stored in the model folder under the same names. NaN features are allowed: each
//! split sends them to the side that fitted better, or to the larger child.
//!
//! Same seed, same data: same tree as scikit-learn 1.9.1 — features are rounded to `f32` as
//! scikit-learn does, the feature visiting order and random thresholds use scikit-learn's
//! generator. Checked node for node by `tests/tree_parity.rs` against fixtures written by
//! `tests/reference/gen_tree.py`. Speed: `bench/tree.py`.
//!
//! Known differences from scikit-learn:
//!
//! * Sums are accumulated in scikit-learn's order (its samples array and its forward or
//!   backward criterion updates are replayed), so even exact ties between features resolve
//!   alike. Where feature values are tied inside a node, or NaN is present, the order among
//!   equal values can differ from scikit-learn's sort, which can only move a sum by rounding
//!   (a near-tie may then break the other way).
//! * `seed` must fit in 32 bits (scikit-learn's `random_state` range); a missing seed is 0.
//! * `class_weight = balanced` counts only classes present in the training labels (as
//!   scikit-learn), while classes named by the dataset but absent keep weight 1 and probability
//!   0.
//! * Infinite feature values are errors at fit and predict time; NaN means "missing".
//!   `absolute_error` rejects NaN at fit time, as scikit-learn does.
//! * `friedman_mse` is `squared_error` (scikit-learn 1.9 made the same change).
//!
//! ```
//! use kiln_classical::tree::{DecisionTreeClassifierParams, TextOptions};
//! use kiln_core::{Dataset, Fit, Predict};
//! use ndarray::array;
//!
//! let data = Dataset::classification(
//!     array![[1.0], [2.0], [3.0], [4.0]],
//!     array![0.0, 0.0, 1.0, 1.0],
//!     vec!["x".into()],
//!     "y",
//!     vec!["no".into(), "yes".into()],
//! )?;
//! let tree = DecisionTreeClassifierParams::default().fit(&data)?;
//! assert_eq!(tree.predict(array![[1.5], [3.5]].view())?.to_vec(), vec![0.0, 1.0]);
//! assert_eq!(tree.tree().threshold[0], 2.5);
//! assert!(tree.export_text(&TextOptions::default()).starts_with("|--- x <= 2.50"));
//! # Ok::<(), kiln_core::Error>(())
//! ```

mod builder;
mod export;
mod model;
mod params;
mod rng;
#[allow(clippy::module_inception)]
mod tree;

pub use export::{color_brew, DiagramBox, DotOptions, TextOptions};
pub use model::{DecisionTreeClassifier, DecisionTreeRegressor};
pub use params::{
    ClassCriterion, ClassWeight, DecisionTreeClassifierParams, DecisionTreeRegressorParams,
    MaxFeatures, RegCriterion, SampleCount, SplitterKind, TreeSettings,
};
pub use tree::{PruningPath, TreeArrays, TREE_LEAF, TREE_UNDEFINED};
