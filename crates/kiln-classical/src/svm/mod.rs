//! Support vector machines: [`SvcParams`] fits a C-SVC [`Svc`] and [`SvrParams`] an
//! epsilon-SVR [`Svr`], with the models and answers of scikit-learn's `SVC` and `SVR`
//! (libsvm underneath) and bounded memory.
//!
//! * [`smo`]: libsvm's SMO solver with second-order working-set selection (Fan, Chen and Lin,
//!   2005), shrinking, and an LRU cache of kernel rows bounded by `cache_size`; nothing
//!   `n × n` is ever allocated, so memory stays O(cache + n·d).
//! * [`kernel`]: linear, rbf, poly and sigmoid kernels; rows computed with a vectorisable dot
//!   product, in parallel for long rows, identical for any thread count.
//! * [`model`] and [`svr`]: one-vs-one training and voting, `dual_coef` / `intercept` in scikit-learn's
//!   sign conventions, `decision_function` in `ovr` or `ovo` shape, Platt probabilities by
//!   internal 5-fold cross-validation, model folders (kinds `svc` and `svr`).
//! * [`scaling_warning`]: the classic SVM mistake (unscaled features) detected, as text for
//!   the CLI to print.
//!
//! The solver splits its per-iteration passes across a [`kiln_core::team`] whose helpers spin
//! between jobs: waking a sleeping rayon worker costs as much as the work of one pass.
//!
//! ```
//! use kiln_classical::svm::SvcParams;
//! use kiln_core::{Dataset, Fit, Predict};
//! use ndarray::array;
//! let x = array![[0.0, 0.0], [0.2, 0.1], [1.0, 1.0], [0.9, 1.1]];
//! let y = array![0.0, 0.0, 1.0, 1.0];
//! let data = Dataset::classification(x.clone(), y.clone(), Dataset::default_feature_names(2),
//!     "y", vec!["a".into(), "b".into()]).unwrap();
//! let model = SvcParams::default().fit(&data).unwrap();
//! assert_eq!(model.predict(x.view()).unwrap(), y);
//! ```

pub mod kernel;
pub mod model;
pub mod params;
pub mod probability;
pub mod smo;
pub mod svr;

use ndarray::ArrayView2;

pub use kernel::KernelFn;
pub use model::Svc;
pub use params::{
    ClassWeight, DecisionShape, Gamma, Kernel, KernelParams, SolverParams, SvcParams, SvrParams,
};
pub use svr::Svr;

/// Features whose standard deviations differ by more than this factor are "badly scaled".
pub const SCALE_RATIO_LIMIT: f64 = 10.0;

/// Detect features on very different scales, the classic SVM mistake, and return a warning
/// naming the widest and narrowest feature; `None` when the scales are comparable (ratio of
/// the largest to the smallest non-zero standard deviation at most [`SCALE_RATIO_LIMIT`]).
/// Libraries never print: the CLI prints this when `--scale` was not given.
pub fn scaling_warning(x: ArrayView2<'_, f64>, feature_names: &[String]) -> Option<String> {
    let n = x.nrows() as f64;
    if n < 2.0 {
        return None;
    }
    let name = |j: usize| {
        feature_names
            .get(j)
            .cloned()
            .unwrap_or_else(|| format!("feature {}", j + 1))
    };
    let stds: Vec<(usize, f64)> = x
        .columns()
        .into_iter()
        .enumerate()
        .filter_map(|(j, c)| {
            let m = c.sum() / n;
            let s = (c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt();
            (s.is_finite() && s > 0.0).then_some((j, s))
        })
        .collect();
    let hi = stds.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let lo = stds.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))?;
    let ratio = hi.1 / lo.1;
    (ratio > SCALE_RATIO_LIMIT).then(|| {
        format!(
            "features are on very different scales (standard deviation of {} is {:.3e}, of {} \
             is {:.3e}, ratio {:.0}): SVMs are not scale-invariant and will fit poorly; \
             standardise the features (--scale standard)",
            name(hi.0),
            hi.1,
            name(lo.0),
            lo.1,
            ratio
        )
    })
}
