//! Metrics with scikit-learn's definitions.
//!
//! Regression: [`mse`], [`rmse`], [`mae`], [`r2`]. Classification: [`accuracy`],
//! [`confusion_matrix`], per-class [`precision_recall_f1`] with macro and weighted averages
//! (a class with no predicted or no true samples scores 0, scikit-learn's `zero_division`
//! default), and [`classification_report`] laid out like scikit-learn's.

use serde::{Deserialize, Serialize};

/// Mean squared error.
pub fn mse(y_true: &[f64], y_pred: &[f64]) -> f64 {
    mean(
        y_true.iter().zip(y_pred).map(|(t, p)| (t - p) * (t - p)),
        y_true.len(),
    )
}

/// Root mean squared error.
pub fn rmse(y_true: &[f64], y_pred: &[f64]) -> f64 {
    mse(y_true, y_pred).sqrt()
}

/// Mean absolute error.
pub fn mae(y_true: &[f64], y_pred: &[f64]) -> f64 {
    mean(
        y_true.iter().zip(y_pred).map(|(t, p)| (t - p).abs()),
        y_true.len(),
    )
}

/// Coefficient of determination R². As scikit-learn (`force_finite=True`): a constant
/// `y_true` gives 1.0 for a perfect prediction and 0.0 otherwise.
pub fn r2(y_true: &[f64], y_pred: &[f64]) -> f64 {
    let m = mean(y_true.iter().copied(), y_true.len());
    let ss_res: f64 = y_true
        .iter()
        .zip(y_pred)
        .map(|(t, p)| (t - p).powi(2))
        .sum();
    let ss_tot: f64 = y_true.iter().map(|t| (t - m).powi(2)).sum();
    if ss_tot == 0.0 {
        return if ss_res == 0.0 { 1.0 } else { 0.0 };
    }
    1.0 - ss_res / ss_tot
}

fn mean(it: impl Iterator<Item = f64>, n: usize) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    it.sum::<f64>() / n as f64
}

/// Fraction of exact matches.
pub fn accuracy(y_true: &[usize], y_pred: &[usize]) -> f64 {
    if y_true.is_empty() {
        return f64::NAN;
    }
    let hits = y_true.iter().zip(y_pred).filter(|(t, p)| t == p).count();
    hits as f64 / y_true.len() as f64
}

/// `m[i][j]` = samples of true class `i` predicted as class `j`.
pub fn confusion_matrix(y_true: &[usize], y_pred: &[usize], n_classes: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; n_classes]; n_classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        if t < n_classes && p < n_classes {
            m[t][p] += 1;
        }
    }
    m
}

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// tp / (tp + fp), 0 when nothing was predicted as this class.
    pub precision: f64,
    /// tp / (tp + fn), 0 when the class has no true samples.
    pub recall: f64,
    /// Harmonic mean of precision and recall, 0 when both are 0.
    pub f1: f64,
    /// Number of true samples of this class.
    pub support: usize,
}

/// Per-class scores.
pub fn precision_recall_f1(
    y_true: &[usize],
    y_pred: &[usize],
    n_classes: usize,
) -> Vec<ClassScores> {
    let cm = confusion_matrix(y_true, y_pred, n_classes);
    (0..n_classes)
        .map(|c| {
            let tp = cm[c][c] as f64;
            let predicted: usize = (0..n_classes).map(|r| cm[r][c]).sum();
            let support: usize = cm[c].iter().sum();
            let precision = if predicted == 0 {
                0.0
            } else {
                tp / predicted as f64
            };
            let recall = if support == 0 {
                0.0
            } else {
                tp / support as f64
            };
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassScores {
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect()
}

/// Unweighted mean of per-class scores (support is the total).
pub fn macro_average(scores: &[ClassScores]) -> ClassScores {
    let n = scores.len().max(1) as f64;
    ClassScores {
        precision: scores.iter().map(|s| s.precision).sum::<f64>() / n,
        recall: scores.iter().map(|s| s.recall).sum::<f64>() / n,
        f1: scores.iter().map(|s| s.f1).sum::<f64>() / n,
        support: scores.iter().map(|s| s.support).sum(),
    }
}

/// Support-weighted mean of per-class scores.
pub fn weighted_average(scores: &[ClassScores]) -> ClassScores {
    let total: usize = scores.iter().map(|s| s.support).sum();
    let w = |f: fn(&ClassScores) -> f64| {
        if total == 0 {
            0.0
        } else {
            scores.iter().map(|s| f(s) * s.support as f64).sum::<f64>() / total as f64
        }
    };
    ClassScores {
        precision: w(|s| s.precision),
        recall: w(|s| s.recall),
        f1: w(|s| s.f1),
        support: total,
    }
}

/// Regression metrics as reported by `kiln fit --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    /// Mean squared error.
    pub mse: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// R².
    pub r2: f64,
}

impl RegressionMetrics {
    /// All regression metrics at once.
    pub fn compute(y_true: &[f64], y_pred: &[f64]) -> Self {
        RegressionMetrics {
            mse: mse(y_true, y_pred),
            rmse: rmse(y_true, y_pred),
            mae: mae(y_true, y_pred),
            r2: r2(y_true, y_pred),
        }
    }
}

/// Classification metrics as reported by `kiln fit --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    /// Fraction correct.
    pub accuracy: f64,
    /// Macro-averaged precision.
    pub precision_macro: f64,
    /// Macro-averaged recall.
    pub recall_macro: f64,
    /// Macro-averaged F1.
    pub f1_macro: f64,
    /// Support-weighted precision.
    pub precision_weighted: f64,
    /// Support-weighted recall.
    pub recall_weighted: f64,
    /// Support-weighted F1.
    pub f1_weighted: f64,
    /// Rows: true class, columns: predicted class.
    pub confusion_matrix: Vec<Vec<usize>>,
    /// Class names in index order.
    pub classes: Vec<String>,
    /// Per-class scores in index order.
    pub per_class: Vec<ClassScores>,
}

impl ClassificationMetrics {
    /// All classification metrics at once.
    pub fn compute(y_true: &[usize], y_pred: &[usize], classes: &[String]) -> Self {
        let k = classes.len();
        let per_class = precision_recall_f1(y_true, y_pred, k);
        let m = macro_average(&per_class);
        let w = weighted_average(&per_class);
        ClassificationMetrics {
            accuracy: accuracy(y_true, y_pred),
            precision_macro: m.precision,
            recall_macro: m.recall,
            f1_macro: m.f1,
            precision_weighted: w.precision,
            recall_weighted: w.recall,
            f1_weighted: w.f1,
            confusion_matrix: confusion_matrix(y_true, y_pred, k),
            classes: classes.to_vec(),
            per_class,
        }
    }

    /// The text report, laid out like scikit-learn's `classification_report` (2 digits).
    pub fn report(&self) -> String {
        classification_report_from(&self.per_class, &self.classes, self.accuracy, 2)
    }
}

/// scikit-learn's `classification_report` text for the given labels.
pub fn classification_report(
    y_true: &[usize],
    y_pred: &[usize],
    classes: &[String],
    digits: usize,
) -> String {
    let scores = precision_recall_f1(y_true, y_pred, classes.len());
    classification_report_from(&scores, classes, accuracy(y_true, y_pred), digits)
}

fn classification_report_from(
    scores: &[ClassScores],
    classes: &[String],
    acc: f64,
    digits: usize,
) -> String {
    let last = "weighted avg";
    let name_width = classes.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let width = name_width.max(last.len()).max(digits);
    let mut out = format!(
        "{:>width$}  {:>9} {:>9} {:>9} {:>9}\n\n",
        "", "precision", "recall", "f1-score", "support"
    );
    let row = |name: &str, s: &ClassScores| {
        format!(
            "{:>width$}  {:>9.digits$} {:>9.digits$} {:>9.digits$} {:>9}\n",
            name, s.precision, s.recall, s.f1, s.support
        )
    };
    for (name, s) in classes.iter().zip(scores) {
        out += &row(name, s);
    }
    out.push('\n');
    let total: usize = scores.iter().map(|s| s.support).sum();
    out += &format!(
        "{:>width$}  {:>9} {:>9} {:>9.digits$} {:>9}\n",
        "accuracy", "", "", acc, total
    );
    out += &row("macro avg", &macro_average(scores));
    out += &row(last, &weighted_average(scores));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_known_values() {
        // scikit-learn's docstring examples.
        let t = [3.0, -0.5, 2.0, 7.0];
        let p = [2.5, 0.0, 2.0, 8.0];
        assert!((mse(&t, &p) - 0.375).abs() < 1e-15);
        assert!((mae(&t, &p) - 0.5).abs() < 1e-15);
        assert!((r2(&t, &p) - 0.948_608_137_044_967_9).abs() < 1e-12);
        assert_eq!(r2(&[1.0, 1.0], &[1.0, 1.0]), 1.0);
        assert_eq!(r2(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn classification_known_values() {
        // sklearn: precision_recall_fscore_support([0,1,2,0,1,2],[0,2,1,0,0,1])
        let t = [0, 1, 2, 0, 1, 2];
        let p = [0, 2, 1, 0, 0, 1];
        let s = precision_recall_f1(&t, &p, 3);
        assert!((s[0].precision - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s[0].recall, 1.0);
        assert!((s[0].f1 - 0.8).abs() < 1e-12);
        assert_eq!(s[1].precision, 0.0);
        assert_eq!(s[2].f1, 0.0);
        let m = macro_average(&s);
        assert!((m.f1 - 0.266_666_666_666_666_6).abs() < 1e-12);
        assert_eq!(
            confusion_matrix(&t, &p, 3),
            vec![vec![2, 0, 0], vec![1, 0, 1], vec![0, 2, 0]]
        );
        assert!((accuracy(&t, &p) - 1.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn report_layout_matches_scikit_learn() {
        // Output of sklearn.metrics.classification_report([0,1,2,2,2],[0,0,2,2,1],
        //   target_names=['class 0','class 1','class 2'])
        let expected = "              precision    recall  f1-score   support

     class 0       0.50      1.00      0.67         1
     class 1       0.00      0.00      0.00         1
     class 2       1.00      0.67      0.80         3

    accuracy                           0.60         5
   macro avg       0.50      0.56      0.49         5
weighted avg       0.70      0.60      0.61         5
";
        let names: Vec<String> = ["class 0", "class 1", "class 2"].map(String::from).to_vec();
        let got = classification_report(&[0, 1, 2, 2, 2], &[0, 0, 2, 2, 1], &names, 2);
        assert_eq!(got, expected);
    }
}
