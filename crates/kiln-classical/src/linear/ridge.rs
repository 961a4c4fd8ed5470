//! Ridge regression: `min ‖Xw + b − y‖² + α‖w‖²` (scikit-learn's `Ridge`; the intercept is
//! not penalised).
//!
//! Through the SVD `R₁₁ = U S Vᵀ` of the QR factor, `w = V diag(sᵢ / (sᵢ² + α)) Uᵀ Qᵀy`: no
//! normal equations, so small `α` on ill-conditioned data stays accurate.

use kiln_core::{Dataset, Error, Fit, Persist, Predict, Result, Tensors};
use ndarray::{Array1, ArrayView2};
use serde::{Deserialize, Serialize};

use super::factor::{factor, solve};

/// Hyperparameters of [`Ridge`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RidgeParams {
    /// L2 penalty strength α. Default `1.0` (as scikit-learn). Allowed: finite, `>= 0`.
    /// `α = 0` is ordinary least squares, with singular values at or below
    /// `max(N, D) × f64::EPSILON × largest` treated as zero (NumPy's `lstsq` default) so that
    /// collinear data still gets the minimum-norm answer.
    pub alpha: f64,
    /// Fit an (unpenalised) intercept by centering `X` and `y` first. Default `true`.
    pub fit_intercept: bool,
}

impl Default for RidgeParams {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            fit_intercept: true,
        }
    }
}

/// A fitted ridge regression model: `predict(x) = x · coef + intercept`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ridge {
    /// One coefficient per feature.
    pub coef: Array1<f64>,
    /// The intercept (0 when `fit_intercept` was false).
    pub intercept: f64,
    /// The hyperparameters it was fitted with.
    pub params: RidgeParams,
}

impl Fit for RidgeParams {
    type Model = Ridge;

    fn validate(&self) -> Result<()> {
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return Err(Error::param("alpha", self.alpha, "a finite number >= 0"));
        }
        Ok(())
    }

    fn fit(&self, data: &Dataset) -> Result<Ridge> {
        self.validate()?;
        super::check_fit_data(data)?;
        let f = factor(data.x.view(), data.y.view(), self.fit_intercept)?;
        let alpha = self.alpha;
        let rcond = data.n_samples().max(data.n_features()) as f64 * f64::EPSILON;
        let (coef, _) = solve(&f, |s, s_max| {
            if alpha > 0.0 {
                // s / (s² + α), written so that s² cannot overflow.
                if s > 0.0 {
                    1.0 / (s + alpha / s)
                } else {
                    0.0
                }
            } else if s > rcond * s_max {
                1.0 / s
            } else {
                0.0
            }
        })?;
        let intercept = f.intercept(&coef);
        let coef = Array1::from(coef);
        Ok(Ridge {
            coef,
            intercept,
            params: self.clone(),
        })
    }
}

impl Predict for Ridge {
    fn n_features(&self) -> usize {
        self.coef.len()
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        super::predict_linear(&self.coef, self.intercept, x)
    }
}

impl Persist for Ridge {
    const KIND: &'static str = "ridge";

    fn to_parts(&self) -> Result<(serde_json::Value, Tensors)> {
        let model = serde_json::json!({ "params": self.params });
        Ok((model, super::coef_tensors(&self.coef, self.intercept)))
    }

    fn from_parts(model: &serde_json::Value, tensors: &Tensors) -> Result<Self> {
        let params = super::read_params(model, RidgeParams::validate)?;
        let (coef, intercept) = super::read_coef(tensors)?;
        Ok(Ridge {
            coef,
            intercept,
            params,
        })
    }
}
