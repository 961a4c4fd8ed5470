//! Feature scalers with scikit-learn's definitions, fitted on training rows only.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::{check_features, Dataset, Error, Fit, Predict, Result};

/// Which scaler to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScalerKind {
    /// `(x - mean) / std` (population std; a constant column gets scale 1).
    Standard,
    /// `(x - min) / (max - min)` into [0, 1] (a constant column gets scale 1).
    MinMax,
}

impl std::str::FromStr for ScalerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "standard" => Ok(ScalerKind::Standard),
            "minmax" => Ok(ScalerKind::MinMax),
            _ => Err(Error::param("scale", s, "standard or minmax")),
        }
    }
}

/// A fitted scaler: `transform(x) = (x - offset) / scale`, column by column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Which scaler this is.
    pub kind: ScalerKind,
    /// Subtracted per column (mean or minimum).
    pub offset: Vec<f64>,
    /// Divided per column (std or range), never 0.
    pub scale: Vec<f64>,
}

impl Scaler {
    /// Fit on the rows of `x`. NaN values are ignored, as scikit-learn's scalers do.
    pub fn fit(kind: ScalerKind, x: ArrayView2<'_, f64>) -> Result<Self> {
        if x.nrows() == 0 {
            return Err(Error::InvalidData("cannot fit a scaler on 0 rows".into()));
        }
        let mut offset = Vec::with_capacity(x.ncols());
        let mut scale = Vec::with_capacity(x.ncols());
        for col in x.axis_iter(Axis(1)) {
            let vals: Vec<f64> = col.iter().copied().filter(|v| !v.is_nan()).collect();
            let n = vals.len().max(1) as f64;
            let (o, s) = match kind {
                ScalerKind::Standard => {
                    let m = vals.iter().sum::<f64>() / n;
                    let var = vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n;
                    (m, var.sqrt())
                }
                ScalerKind::MinMax => {
                    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    (lo, hi - lo)
                }
            };
            offset.push(if o.is_finite() { o } else { 0.0 });
            // scikit-learn's _handle_zeros_in_scale: tiny scales become 1.
            scale.push(
                if s.is_finite() && s > 10.0 * f64::EPSILON * o.abs().max(1.0) {
                    s
                } else {
                    1.0
                },
            );
        }
        Ok(Scaler {
            kind,
            offset,
            scale,
        })
    }

    /// Number of columns the scaler was fitted on.
    pub fn n_features(&self) -> usize {
        self.offset.len()
    }

    /// Scale `x` (NaN stays NaN).
    pub fn transform(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        check_features(self.n_features(), x)?;
        let offset = Array1::from(self.offset.clone());
        let scale = Array1::from(self.scale.clone());
        Ok((&x - &offset) / &scale)
    }
}

/// Hyperparameters of an estimator preceded by an optional scaler, fitted on the training rows
/// only (scikit-learn's `make_pipeline(StandardScaler(), est)`). Cross-validating a `Scaled`
/// refits the scaler inside each fold, so no information leaks from held-out rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaled<F> {
    /// The scaler to fit first, if any.
    pub scaler: Option<ScalerKind>,
    /// The estimator.
    pub inner: F,
}

/// A fitted [`Scaled`]: the scaler (if any) and the model it feeds.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaledModel<M> {
    /// Fitted scaler.
    pub scaler: Option<Scaler>,
    /// Fitted model, trained on scaled features.
    pub model: M,
}

impl<F: Fit> Fit for Scaled<F> {
    type Model = ScaledModel<F::Model>;

    fn validate(&self) -> Result<()> {
        self.inner.validate()
    }

    fn fit(&self, data: &Dataset) -> Result<Self::Model> {
        self.inner.validate()?;
        let Some(kind) = self.scaler else {
            return Ok(ScaledModel {
                scaler: None,
                model: self.inner.fit(data)?,
            });
        };
        if !self.inner.allows_nan() {
            crate::check_finite(data.x.view())?;
        }
        let scaler = Scaler::fit(kind, data.x.view())?;
        let mut scaled = data.clone();
        scaled.x = scaler.transform(data.x.view())?;
        Ok(ScaledModel {
            model: self.inner.fit(&scaled)?,
            scaler: Some(scaler),
        })
    }

    fn allows_nan(&self) -> bool {
        self.inner.allows_nan()
    }
}

impl<M: Predict> Predict for ScaledModel<M> {
    fn n_features(&self) -> usize {
        self.model.n_features()
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        check_features(self.n_features(), x)?;
        match &self.scaler {
            None => self.model.predict(x),
            Some(s) => self.model.predict(s.transform(x)?.view()),
        }
    }

    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Result<Option<Array2<f64>>> {
        check_features(self.n_features(), x)?;
        match &self.scaler {
            None => self.model.predict_proba(x),
            Some(s) => self.model.predict_proba(s.transform(x)?.view()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn standard_and_minmax() {
        let x = array![[0.0, 1.0, 5.0], [2.0, 1.0, 7.0], [4.0, 1.0, 9.0]];
        let s = Scaler::fit(ScalerKind::Standard, x.view()).unwrap();
        let t = s.transform(x.view()).unwrap();
        let sd = (8.0f64 / 3.0).sqrt();
        assert!((t[[0, 0]] + 2.0 / sd).abs() < 1e-12);
        assert_eq!(t.column(1).to_vec(), vec![0.0, 0.0, 0.0]);
        let m = Scaler::fit(ScalerKind::MinMax, x.view()).unwrap();
        let t = m.transform(x.view()).unwrap();
        assert_eq!(t.column(2).to_vec(), vec![0.0, 0.5, 1.0]);
        assert!(m.transform(array![[1.0]].view()).is_err());
        assert!("zscore".parse::<ScalerKind>().is_err());
    }

    /// Predicts each row's first feature: shows what the inner model sees.
    struct FirstFeature;
    struct FirstFeatureModel(usize);

    impl Fit for FirstFeature {
        type Model = FirstFeatureModel;
        fn validate(&self) -> Result<()> {
            Ok(())
        }
        fn fit(&self, data: &Dataset) -> Result<FirstFeatureModel> {
            crate::check_finite(data.x.view())?;
            Ok(FirstFeatureModel(data.n_features()))
        }
    }

    impl Predict for FirstFeatureModel {
        fn n_features(&self) -> usize {
            self.0
        }
        fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
            Ok(x.column(0).to_owned())
        }
    }

    #[test]
    fn scaled_fits_the_scaler_on_training_rows_only() {
        let train = Dataset::regression(
            array![[0.0], [10.0]],
            array![0.0, 1.0],
            vec!["a".into()],
            "y",
        )
        .unwrap();
        let p = Scaled {
            scaler: Some(ScalerKind::MinMax),
            inner: FirstFeature,
        };
        let m = p.fit(&train).unwrap();
        // New rows are scaled with the training minimum and range.
        assert_eq!(
            m.predict(array![[5.0], [20.0]].view()).unwrap().to_vec(),
            vec![0.5, 2.0]
        );
        assert!(m.predict(array![[5.0, 1.0]].view()).is_err());
        let plain = Scaled {
            scaler: None,
            inner: FirstFeature,
        }
        .fit(&train)
        .unwrap();
        assert_eq!(
            plain.predict(array![[5.0]].view()).unwrap().to_vec(),
            vec![5.0]
        );
    }
}
