//! The estimator traits: hyperparameters [`Fit`] a fitted model, which can [`Predict`].

use ndarray::{Array1, Array2, ArrayView2};

use crate::{Dataset, Error, Result};

/// Hyperparameters that can be fitted to data.
///
/// `fit` takes `&self` and returns a new fitted type: the parameters are never mutated and a
/// model cannot be used before it is fitted.
pub trait Fit {
    /// The fitted model.
    type Model: Predict;

    /// Check every hyperparameter, naming the first one out of range.
    fn validate(&self) -> Result<()>;

    /// Fit to `data`. Implementations call [`Fit::validate`] first.
    fn fit(&self, data: &Dataset) -> Result<Self::Model>;

    /// Whether the estimator accepts NaN feature values (decision trees do; most do not).
    fn allows_nan(&self) -> bool {
        false
    }
}

/// A fitted model.
pub trait Predict {
    /// Number of features the model was fitted with.
    fn n_features(&self) -> usize;

    /// Predictions for each row of `x`: values for regression, class indices (as `f64`) for
    /// classification.
    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>>;

    /// Class probabilities (`n_samples × n_classes`) when the model has them.
    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Result<Option<Array2<f64>>> {
        let _ = x;
        Ok(None)
    }
}

/// Error unless `x` has `expected` columns.
pub fn check_features(expected: usize, x: ArrayView2<'_, f64>) -> Result<()> {
    if x.ncols() != expected {
        return Err(Error::FeatureMismatch {
            expected,
            got: x.ncols(),
        });
    }
    Ok(())
}

/// Error naming the first NaN or infinite value of `x` (1-based row and column).
pub fn check_finite(x: ArrayView2<'_, f64>) -> Result<()> {
    for ((r, c), &v) in x.indexed_iter() {
        if !v.is_finite() {
            return Err(Error::NonFinite {
                row: r + 1,
                col: c + 1,
                name: format!("feature {}", c + 1),
                value: v,
            });
        }
    }
    Ok(())
}

/// The column of the largest value of each row (the first on ties, as numpy's `argmax`), as
/// f64 class indices: a classifier's prediction from its scores or probabilities.
pub fn argmax_rows(scores: &ndarray::Array2<f64>) -> ndarray::Array1<f64> {
    scores
        .rows()
        .into_iter()
        .map(|r| {
            let mut best = 0;
            for (j, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = j;
                }
            }
            best as f64
        })
        .collect()
}

/// Softmax of each row of logits (shifted by the row maximum, so large logits don't overflow).
pub fn softmax_rows(mut logits: ndarray::Array2<f64>) -> ndarray::Array2<f64> {
    for mut r in logits.rows_mut() {
        let m = r.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        r.mapv_inplace(|v| (v - m).exp());
        let s = r.sum();
        r.mapv_inplace(|v| v / s);
    }
    logits
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn finite_and_feature_checks() {
        let x = array![[1.0, 2.0], [3.0, f64::NAN]];
        let e = check_finite(x.view()).unwrap_err().to_string();
        assert!(e.contains("row 2, column 2"), "{e}");
        let e = check_features(3, x.view()).unwrap_err().to_string();
        assert_eq!(e, "feature count mismatch: fitted with 3, got 2");
        assert!(check_features(2, x.view()).is_ok());
    }
}
