//! # kiln-core: the shared vocabulary of kiln
//!
//! Every other kiln crate speaks in the types defined here, so that a CSV table, a built-in
//! dataset, a decision tree, an SVM and a neural network all meet on the same ground:
//!
//! * [`Dataset`]: a feature matrix (`Array2<f64>`, rows are samples), a target vector, and the
//!   names of the features, the target and (for classification) the classes.
//! * [`Fit`] and [`Predict`]: hyperparameters fit a *new* fitted type, so predicting before
//!   fitting cannot compile and fitting never mutates the parameters.
//! * [`metrics`]: regression and classification metrics with scikit-learn's definitions,
//!   including the text classification report.
//! * [`split`]: train/test split (optionally stratified), k-fold and stratified k-fold, and
//!   cross-validation of any estimator.
//! * [`scale`]: `StandardScaler` and `MinMaxScaler` equivalents.
//! * [`folder`]: model folders (`config.json` + `model.safetensors`), written atomically and
//!   checked thoroughly when read.
//! * [`checks`]: the common-check suite that every estimator joins with one line.
//! * [`team`]: a fork-join team with spinning helpers, for parallel passes too short for
//!   rayon's sleeping workers.
//!
//! This crate knows nothing of candle, async code or printing.
//!
//! ```
//! use kiln_core::{metrics, split};
//! let y_true = [3.0, -0.5, 2.0, 7.0];
//! let y_pred = [2.5, 0.0, 2.0, 8.0];
//! assert!((metrics::mse(&y_true, &y_pred) - 0.375).abs() < 1e-12);
//! let (train, test) = split::train_test_split(10, 0.2, 0, None).unwrap();
//! assert_eq!((train.len(), test.len()), (8, 2));
//! ```
#![warn(missing_docs)]

pub mod checks;
pub mod dataset;
pub mod error;
pub mod folder;
pub mod metrics;
pub mod scale;
pub mod split;
pub mod team;
pub mod traits;

pub use dataset::{Dataset, Task};
pub use error::{Error, Result};
pub use folder::{ModelFolder, Persist, Tensors};
pub use traits::{argmax_rows, check_features, check_finite, softmax_rows, Fit, Predict};

/// The random generator used everywhere in kiln: ChaCha8, seeded explicitly.
pub type Rng = rand_chacha::ChaCha8Rng;

/// A [`Rng`] seeded with `seed`. There is no global generator in kiln: every random choice
/// takes a seed or a generator argument.
pub fn rng(seed: u64) -> Rng {
    use rand::SeedableRng;
    Rng::seed_from_u64(seed)
}
