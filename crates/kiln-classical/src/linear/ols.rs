//! Ordinary least squares: `min ‖Xw + b − y‖²`, the minimum-norm `w` when `X` is rank
//! deficient (scikit-learn's `LinearRegression`).

use kiln_core::{Dataset, Error, Fit, Persist, Predict, Result, Tensors};
use ndarray::{Array1, ArrayView2};
use serde::{Deserialize, Serialize};

use super::factor::{factor, solve};

/// Hyperparameters of [`LinearRegression`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearRegressionParams {
    /// Fit an intercept by centering `X` and `y` first. Default `true`.
    pub fit_intercept: bool,
    /// Relative cutoff for small singular values: singular values of the (centered) `X`
    /// at or below `tol × largest` count as zero, and the minimum-norm solution is returned.
    /// Default `1e-6`, as scikit-learn 1.9's `LinearRegression(tol=1e-6)`, which passes it
    /// as the `cond` of `scipy.linalg.lstsq`. Allowed: `0 <= tol < 1`.
    pub tol: f64,
}

impl Default for LinearRegressionParams {
    fn default() -> Self {
        Self {
            fit_intercept: true,
            tol: 1e-6,
        }
    }
}

/// A fitted ordinary least squares model: `predict(x) = x · coef + intercept`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearRegression {
    /// One coefficient per feature.
    pub coef: Array1<f64>,
    /// The intercept (0 when `fit_intercept` was false).
    pub intercept: f64,
    /// Number of singular values above the cutoff (scikit-learn's `rank_`).
    pub rank: usize,
    /// Singular values of the (centered) training `X`, descending (scikit-learn's
    /// `singular_`).
    pub singular_values: Array1<f64>,
    /// The hyperparameters it was fitted with.
    pub params: LinearRegressionParams,
}

impl Fit for LinearRegressionParams {
    type Model = LinearRegression;

    fn validate(&self) -> Result<()> {
        if !(self.tol >= 0.0 && self.tol < 1.0) {
            return Err(Error::param("tol", self.tol, "a number with 0 <= tol < 1"));
        }
        Ok(())
    }

    fn fit(&self, data: &Dataset) -> Result<LinearRegression> {
        self.validate()?;
        super::check_fit_data(data)?;
        let f = factor(data.x.view(), data.y.view(), self.fit_intercept)?;
        let tol = self.tol;
        let (coef, s) = solve(&f, |s, s_max| if s > tol * s_max { 1.0 / s } else { 0.0 })?;
        let s_max = s.iter().copied().fold(0.0, f64::max);
        let rank = s.iter().filter(|&&v| v > tol * s_max).count();
        let intercept = f.intercept(&coef);
        let coef = Array1::from(coef);
        Ok(LinearRegression {
            coef,
            intercept,
            rank,
            singular_values: Array1::from(s),
            params: self.clone(),
        })
    }
}

impl Predict for LinearRegression {
    fn n_features(&self) -> usize {
        self.coef.len()
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        super::predict_linear(&self.coef, self.intercept, x)
    }
}

impl Persist for LinearRegression {
    const KIND: &'static str = "linear_regression";

    fn to_parts(&self) -> Result<(serde_json::Value, Tensors)> {
        let mut t = super::coef_tensors(&self.coef, self.intercept);
        t.insert_f64(
            "singular_values",
            &[self.singular_values.len()],
            self.singular_values.to_vec(),
        );
        let model = serde_json::json!({ "params": self.params, "rank": self.rank });
        Ok((model, t))
    }

    fn from_parts(model: &serde_json::Value, tensors: &Tensors) -> Result<Self> {
        let params = super::read_params(model, LinearRegressionParams::validate)?;
        let (coef, intercept) = super::read_coef(tensors)?;
        let d = coef.len();
        let singular_values = Array1::from(tensors.f64s("singular_values", Some(&[d]))?.to_vec());
        let rank = model
            .get("rank")
            .and_then(serde_json::Value::as_u64)
            .filter(|&r| r as usize <= d)
            .ok_or_else(|| {
                Error::folder(
                    kiln_core::folder::CONFIG_FILE,
                    format!("model.rank is missing or not an integer in 0..={d}"),
                )
            })? as usize;
        Ok(LinearRegression {
            coef,
            intercept,
            rank,
            singular_values,
            params,
        })
    }
}
