//! Metrics and printing shared by `fit` and `eval`.

use kiln_core::metrics::{ClassificationMetrics, RegressionMetrics};
use kiln_core::Task;
use serde::Serialize;

use crate::models::num;

/// The metrics object of `--json` output.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Metrics {
    /// `mse`, `rmse`, `mae`, `r2`.
    Regression(RegressionMetrics),
    /// `accuracy`, macro and weighted precision/recall/F1, confusion matrix, classes.
    Classification(ClassificationMetrics),
}

impl Metrics {
    /// Compare `y_pred` with `y_true` (class indices into `classes` for classification).
    pub fn compute(task: Task, y_true: &[f64], y_pred: &[f64], classes: Option<&[String]>) -> Self {
        match (task, classes) {
            (Task::Classification, Some(classes)) => {
                let t: Vec<usize> = y_true.iter().map(|&v| v as usize).collect();
                let p: Vec<usize> = y_pred.iter().map(|&v| v as usize).collect();
                Metrics::Classification(ClassificationMetrics::compute(&t, &p, classes))
            }
            _ => Metrics::Regression(RegressionMetrics::compute(y_true, y_pred)),
        }
    }

    /// One line: the headline numbers.
    pub fn line(&self) -> String {
        match self {
            Metrics::Regression(m) => format!(
                "mse {}  rmse {}  mae {}  r2 {}",
                num(m.mse),
                num(m.rmse),
                num(m.mae),
                num(m.r2)
            ),
            Metrics::Classification(m) => format!(
                "accuracy {:.4}  f1_macro {:.4}  f1_weighted {:.4}",
                m.accuracy, m.f1_macro, m.f1_weighted
            ),
        }
    }

    /// The detailed block: classification report and confusion matrix (empty for regression).
    pub fn details(&self) -> String {
        match self {
            Metrics::Regression(_) => String::new(),
            Metrics::Classification(m) => {
                let mut s = m.report();
                s.push_str("\nconfusion matrix (rows: true, columns: predicted)\n");
                s.push_str(&confusion_text(&m.classes, &m.confusion_matrix));
                s
            }
        }
    }
}

/// A confusion matrix as an aligned text table.
pub fn confusion_text(classes: &[String], m: &[Vec<usize>]) -> String {
    let w = classes
        .iter()
        .map(|c| c.chars().count())
        .chain(m.iter().flatten().map(|v| v.to_string().len()))
        .max()
        .unwrap_or(1)
        .max(3);
    let mut s = format!("{:>w$}", "");
    for c in classes {
        s += &format!(" {c:>w$}");
    }
    s.push('\n');
    for (c, row) in classes.iter().zip(m) {
        s += &format!("{c:>w$}");
        for v in row {
            s += &format!(" {v:>w$}");
        }
        s.push('\n');
    }
    s
}

/// Print `(label, value)` pairs aligned, to stdout.
pub fn print_pairs(pairs: &[(String, String)]) {
    let w = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in pairs {
        println!("{k:<w$}  {v}");
    }
}
