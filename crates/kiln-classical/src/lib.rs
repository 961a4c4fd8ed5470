//! # kiln-classical: classical machine learning on kiln-core's vocabulary
//!
//! Estimators follow kiln-core's pattern: a serde hyperparameter struct with `Default` and
//! `validate()` implements [`kiln_core::Fit`] and returns a new fitted type, which implements
//! [`kiln_core::Predict`] and [`kiln_core::Persist`] (so it saves to a model folder). Every
//! estimator passes [`kiln_core::checks::check_estimator`] and is tested against
//! scikit-learn on fixtures made by committed scripts under `tests/reference/`.
//!
//! Modules:
//!
//! * [`linear`]: ordinary least squares and ridge regression, through a parallel tall-skinny
//!   QR and an SVD (minimum-norm answers on collinear data, as scikit-learn).
//! * [`tree`]: decision trees (CART) for classification and regression.
//! * `svm`: support vector machines (SMO) with linear and RBF kernels.
//!
//! This crate never depends on candle.
//!
//! ```
//! use kiln_classical::linear::LinearRegressionParams;
//! use kiln_core::{Dataset, Fit, Predict};
//! use ndarray::array;
//!
//! let x = array![[1.0], [2.0], [3.0], [4.0]];
//! let y = array![3.0, 5.0, 7.0, 9.0]; // y = 2x + 1
//! let data = Dataset::regression(x, y, vec!["x".into()], "y").unwrap();
//! let model = LinearRegressionParams::default().fit(&data).unwrap();
//! let pred = model.predict(array![[10.0]].view()).unwrap();
//! assert!((pred[0] - 21.0).abs() < 1e-10);
//! ```
#![warn(missing_docs)]

pub mod linear;
pub mod svm;
pub mod tree;
