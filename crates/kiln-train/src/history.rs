//! `history.jsonl`: one JSON record per logged training step and per evaluation.

use std::io::Write;
use std::path::Path;

use kiln_nn::{Error, Result};

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// `"train"` or `"eval"`.
    pub kind: String,
    /// Optimizer steps done.
    pub step: usize,
    /// Epochs done (fractional).
    pub epoch: f64,
    /// Mean training loss since the previous record, or the validation loss.
    pub loss: f64,
    /// Validation accuracy (classifiers).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub accuracy: Option<f64>,
    /// Learning rate of the last step (training records).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lr: Option<f64>,
    /// Gradient norm before clipping of the last step, when clipping.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norm: Option<f64>,
    /// Training throughput since the previous record.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub samples_per_sec: Option<f64>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Append `record` as one line.
pub fn append(path: &Path, record: &Record) -> Result<()> {
    let line =
        serde_json::to_string(record).map_err(|e| Error::shape(format!("history record: {e}")))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    writeln!(f, "{line}").map_err(io(path))
}

/// Read every record.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// Keep only the records up to step `step` (used when resuming from a checkpoint).
pub fn truncate_after(path: &Path, step: usize) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let kept: Vec<Record> = read(path)?.into_iter().filter(|r| r.step <= step).collect();
    let mut text = String::new();
    for r in &kept {
        text.push_str(&serde_json::to_string(r).map_err(|e| Error::shape(e.to_string()))?);
        text.push('\n');
    }
    kiln_core::folder::write_atomic(path, text.as_bytes())?;
    Ok(())
}
