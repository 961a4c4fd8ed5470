//! [`Dataset`]: features, target and names, the unit of data every estimator consumes.

use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a target means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Real-valued target.
    Regression,
    /// Class labels; `y` holds class indices into [`Dataset::classes`].
    Classification,
}

/// A table of samples: `x` is `n_samples × n_features`, `y` has `n_samples` entries.
///
/// For classification `y` holds class indices (`0.0, 1.0, ...`) into `classes`, which are the
/// sorted distinct target values, reported by name (scikit-learn's `classes_`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Feature matrix, one row per sample.
    pub x: Array2<f64>,
    /// Target: values (regression) or class indices (classification).
    pub y: Array1<f64>,
    /// One name per column of `x`.
    pub feature_names: Vec<String>,
    /// Name of the target column.
    pub target_name: String,
    /// Class names for classification, `None` for regression.
    pub classes: Option<Vec<String>>,
}

impl Dataset {
    /// A regression dataset. Checks that the shapes agree.
    pub fn regression(
        x: Array2<f64>,
        y: Array1<f64>,
        feature_names: Vec<String>,
        target_name: impl Into<String>,
    ) -> Result<Self> {
        let d = Dataset {
            x,
            y,
            feature_names,
            target_name: target_name.into(),
            classes: None,
        };
        d.validate()?;
        Ok(d)
    }

    /// A classification dataset with `y` holding class indices into `classes`.
    pub fn classification(
        x: Array2<f64>,
        y: Array1<f64>,
        feature_names: Vec<String>,
        target_name: impl Into<String>,
        classes: Vec<String>,
    ) -> Result<Self> {
        let d = Dataset {
            x,
            y,
            feature_names,
            target_name: target_name.into(),
            classes: Some(classes),
        };
        d.validate()?;
        Ok(d)
    }

    /// Default feature names `x0, x1, ...`.
    pub fn default_feature_names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("x{i}")).collect()
    }

    fn validate(&self) -> Result<()> {
        if self.x.nrows() != self.y.len() {
            return Err(Error::Shape(format!(
                "x has {} rows but y has {} values",
                self.x.nrows(),
                self.y.len()
            )));
        }
        if self.feature_names.len() != self.x.ncols() {
            return Err(Error::Shape(format!(
                "x has {} columns but {} feature names were given",
                self.x.ncols(),
                self.feature_names.len()
            )));
        }
        if let Some(classes) = &self.classes {
            for (i, &v) in self.y.iter().enumerate() {
                if v < 0.0 || v.fract() != 0.0 || v as usize >= classes.len() {
                    return Err(Error::InvalidData(format!(
                        "row {}: class index {v} is not one of 0..{}",
                        i + 1,
                        classes.len()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Regression or classification.
    pub fn task(&self) -> Task {
        if self.classes.is_some() {
            Task::Classification
        } else {
            Task::Regression
        }
    }

    /// Number of samples (rows).
    pub fn n_samples(&self) -> usize {
        self.x.nrows()
    }

    /// Number of features (columns of `x`).
    pub fn n_features(&self) -> usize {
        self.x.ncols()
    }

    /// Number of classes (0 for regression).
    pub fn n_classes(&self) -> usize {
        self.classes.as_ref().map_or(0, Vec::len)
    }

    /// Class indices as `usize` (classification only; regression targets are truncated).
    pub fn labels(&self) -> Vec<usize> {
        self.y.iter().map(|&v| v as usize).collect()
    }

    /// The rows at `indices`, in that order, with the same names.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        Dataset {
            x: self.x.select(Axis(0), indices),
            y: self.y.select(Axis(0), indices),
            feature_names: self.feature_names.clone(),
            target_name: self.target_name.clone(),
            classes: self.classes.clone(),
        }
    }

    /// Keep only the named features, in the given order.
    pub fn select_features(&self, names: &[String]) -> Result<Dataset> {
        let mut cols = Vec::with_capacity(names.len());
        for n in names {
            let i = self
                .feature_names
                .iter()
                .position(|f| f == n)
                .ok_or_else(|| {
                    Error::InvalidData(format!(
                        "no feature named {n:?}; the features are: {}",
                        self.feature_names.join(", ")
                    ))
                })?;
            cols.push(i);
        }
        Ok(Dataset {
            x: self.x.select(Axis(1), &cols),
            y: self.y.clone(),
            feature_names: names.to_vec(),
            target_name: self.target_name.clone(),
            classes: self.classes.clone(),
        })
    }

    /// Count of samples per class (classification).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.n_classes()];
        for &v in &self.y {
            if let Some(c) = counts.get_mut(v as usize) {
                *c += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn shapes_are_checked() {
        let err = Dataset::regression(array![[1.0], [2.0]], array![1.0], vec!["a".into()], "y")
            .unwrap_err();
        assert!(err.to_string().contains("2 rows but y has 1"), "{err}");
        let err = Dataset::classification(
            array![[1.0], [2.0]],
            array![0.0, 2.0],
            vec!["a".into()],
            "y",
            vec!["a".into(), "b".into()],
        )
        .unwrap_err();
        assert!(err.to_string().contains("class index 2"), "{err}");
    }

    #[test]
    fn select_keeps_names() {
        let d = Dataset::classification(
            array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
            array![0.0, 1.0, 0.0],
            vec!["a".into(), "b".into()],
            "t",
            vec!["no".into(), "yes".into()],
        )
        .unwrap();
        let s = d.select(&[2, 0]);
        assert_eq!(s.x, array![[5.0, 6.0], [1.0, 2.0]]);
        assert_eq!(s.class_counts(), vec![2, 0]);
        let f = d.select_features(&["b".into()]).unwrap();
        assert_eq!(f.x, array![[2.0], [4.0], [6.0]]);
        assert!(d.select_features(&["zz".into()]).is_err());
    }
}
