//! Linear models: ordinary least squares ([`LinearRegressionParams`] → [`LinearRegression`])
//! and ridge regression ([`RidgeParams`] → [`Ridge`]), with scikit-learn's answers.
//!
//! Both solve through the same factorisation (see the `factor` module source): one parallel
//! pass of tall-skinny Householder QR over the (centered) rows of `[X | y]`, then an SVD of the
//! small `D × D` triangular factor. No `N × D` copy of the data is made, the condition number
//! is not squared as with the normal equations, and rank-deficient or collinear features give
//! the minimum-norm solution (as scikit-learn's `lstsq`), never garbage or a panic.
//!
//! With `fit_intercept` (the default) `X` and `y` are centered by their column means, the
//! coefficients are fitted on the centered data and `intercept = mean(y) − mean(X)·coef`, as
//! scikit-learn does; the intercept is not penalised by ridge.
//!
//! The scikit-learn parity tests are `crates/kiln-classical/tests/linear.rs` (fixtures from
//! `tests/reference/gen_linear.py`); the speed comparison is `python3 bench/linear.py`.
//!
//! ```
//! use kiln_classical::linear::{LinearRegressionParams, RidgeParams};
//! use kiln_core::{Dataset, Fit, Predict};
//! use ndarray::array;
//!
//! // y = 1 + 2 x₀ − x₁ exactly.
//! let x = array![[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 5.0], [4.0, 2.0]];
//! let y = array![0.0, 3.0, 4.0, 2.0, 7.0];
//! let data = Dataset::regression(x, y, Dataset::default_feature_names(2), "y").unwrap();
//! let ols = LinearRegressionParams::default().fit(&data).unwrap();
//! assert!((ols.coef[0] - 2.0).abs() < 1e-12 && (ols.coef[1] + 1.0).abs() < 1e-12);
//! assert!((ols.intercept - 1.0).abs() < 1e-12);
//!
//! let ridge = RidgeParams { alpha: 10.0, ..RidgeParams::default() }.fit(&data).unwrap();
//! assert!(ridge.coef[0].abs() < 2.0); // shrunk towards zero
//! let pred = ridge.predict(data.x.view()).unwrap();
//! assert_eq!(pred.len(), 5);
//! ```

mod factor;
mod ols;
mod ridge;

pub use ols::{LinearRegression, LinearRegressionParams};
pub use ridge::{Ridge, RidgeParams};

use kiln_core::folder::CONFIG_FILE;
use kiln_core::{check_features, check_finite, Dataset, Error, Result, Tensors};
use ndarray::{Array1, ArrayView2};

/// Errors for data no linear model can be fitted to: no rows or no feature columns.
fn check_fit_data(data: &Dataset) -> Result<()> {
    if data.n_samples() < 1 {
        return Err(Error::InvalidData(
            "no samples: a linear model needs at least 1 row".into(),
        ));
    }
    if data.n_features() < 1 {
        return Err(Error::InvalidData(
            "no features: a linear model needs at least 1 feature column".into(),
        ));
    }
    if data.y.len() != data.n_samples() {
        return Err(Error::Shape(format!(
            "x has {} rows but y has {} values",
            data.n_samples(),
            data.y.len()
        )));
    }
    Ok(())
}

/// `x · coef + intercept`, after checking the feature count and that `x` is finite.
fn predict_linear(
    coef: &Array1<f64>,
    intercept: f64,
    x: ArrayView2<'_, f64>,
) -> Result<Array1<f64>> {
    check_features(coef.len(), x)?;
    check_finite(x)?;
    Ok(x.dot(coef) + intercept)
}

/// Write `coef` (shape `[D]`) and `intercept` (shape `[1]`) tensors.
fn coef_tensors(coef: &Array1<f64>, intercept: f64) -> Tensors {
    let mut t = Tensors::new();
    t.insert_f64("coef", &[coef.len()], coef.to_vec());
    t.insert_f64("intercept", &[1], vec![intercept]);
    t
}

/// Read back what [`coef_tensors`] wrote, checking shapes and finiteness.
fn read_coef(tensors: &Tensors) -> Result<(Array1<f64>, f64)> {
    let shape = &tensors.get("coef")?.shape;
    if shape.len() != 1 || shape[0] == 0 {
        return Err(Error::folder(
            kiln_core::folder::TENSORS_FILE,
            format!(
                "tensor \"coef\" has shape {shape:?}, expected [n_features] with n_features >= 1"
            ),
        ));
    }
    let coef = tensors.f64s("coef", Some(&[shape[0]]))?;
    let intercept = tensors.f64s("intercept", Some(&[1]))?[0];
    if let Some(bad) = coef.iter().chain([&intercept]).find(|v| !v.is_finite()) {
        return Err(Error::folder(
            kiln_core::folder::TENSORS_FILE,
            format!("non-finite coefficient {bad}: the file is corrupt"),
        ));
    }
    Ok((Array1::from(coef.to_vec()), intercept))
}

/// Parse `model["params"]` from `config.json` and validate it.
fn read_params<P: serde::de::DeserializeOwned>(
    model: &serde_json::Value,
    validate: impl Fn(&P) -> Result<()>,
) -> Result<P> {
    let value = model
        .get("params")
        .ok_or_else(|| Error::folder(CONFIG_FILE, "model has no \"params\""))?;
    let params: P = serde_json::from_value(value.clone())
        .map_err(|e| Error::folder(CONFIG_FILE, format!("model.params: {e}")))?;
    validate(&params)?;
    Ok(params)
}
