//! The training configuration, written as `config.json` into the run folder before the first
//! step.

use kiln_nn::optim::OptimizerConfig;
use kiln_nn::{Error, Result};

use crate::schedule::Schedule;

/// Which validation number decides "best" and early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Validation loss, lower is better (the default).
    #[default]
    Loss,
    /// Validation accuracy, higher is better (classifiers only).
    Accuracy,
}

impl Metric {
    /// True if `new` is better than `best` by more than `min_delta`.
    pub fn improves(&self, new: f64, best: f64, min_delta: f64) -> bool {
        match self {
            Metric::Loss => new < best - min_delta,
            Metric::Accuracy => new > best + min_delta,
        }
    }
}

/// Stop when the validation metric has not improved for `patience` evaluations.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EarlyStopping {
    /// Evaluations without improvement before stopping (default 5).
    pub patience: usize,
    /// Smallest change that counts as an improvement (default 0).
    pub min_delta: f64,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        Self {
            patience: 5,
            min_delta: 0.0,
        }
    }
}

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// The model's own configuration, recorded verbatim (default `null`; the trainer does not
    /// read it).
    pub model: serde_json::Value,
    /// Optimizer and its options (default Adam, lr 0.001).
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule (default constant).
    pub schedule: Schedule,
    /// Examples per mini-batch (default 32).
    pub batch_size: usize,
    /// Passes over the training data (default 1); ignored when `steps` is set.
    pub epochs: usize,
    /// Total optimizer steps; overrides `epochs` (default none).
    pub steps: Option<usize>,
    /// Seed of the shuffling and dropout (default 0).
    pub seed: u64,
    /// Drop the last incomplete batch of each epoch (default false).
    pub drop_last: bool,
    /// Evaluate every this many steps; `None` evaluates at the end of each epoch (default none).
    pub eval_every: Option<usize>,
    /// Write a training record to the history every this many steps (default 10).
    pub log_every: usize,
    /// Save a checkpoint every this many steps; one is always saved at the end (default none).
    pub checkpoint_every: Option<usize>,
    /// Clip gradients to this global L2 norm (default none).
    pub clip_grad_norm: Option<f64>,
    /// Metric that picks the best model, early stopping and plateau reduction (default loss).
    pub metric: Metric,
    /// Early stopping (default none).
    pub early_stopping: Option<EarlyStopping>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: serde_json::Value::Null,
            optimizer: OptimizerConfig::default(),
            schedule: Schedule::Constant,
            batch_size: 32,
            epochs: 1,
            steps: None,
            seed: 0,
            drop_last: false,
            eval_every: None,
            log_every: 10,
            checkpoint_every: None,
            clip_grad_norm: None,
            metric: Metric::Loss,
            early_stopping: None,
        }
    }
}

impl TrainConfig {
    /// Check every option, naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        self.optimizer.validate()?;
        self.schedule.validate()?;
        if self.batch_size == 0 {
            return Err(Error::param("batch_size", self.batch_size, "≥ 1"));
        }
        if self.steps.is_none() && self.epochs == 0 {
            return Err(Error::param("epochs", self.epochs, "≥ 1 (or set steps)"));
        }
        if self.steps == Some(0) {
            return Err(Error::param("steps", 0, "≥ 1"));
        }
        if self.eval_every == Some(0) {
            return Err(Error::param("eval_every", 0, "≥ 1 (or none: each epoch)"));
        }
        if self.log_every == 0 {
            return Err(Error::param("log_every", 0, "≥ 1"));
        }
        if self.checkpoint_every == Some(0) {
            return Err(Error::param(
                "checkpoint_every",
                0,
                "≥ 1 (or none: at the end only)",
            ));
        }
        if let Some(c) = self.clip_grad_norm {
            if c.is_nan() || c <= 0.0 || c.is_infinite() {
                return Err(Error::param("clip_grad_norm", c, "a finite number > 0"));
            }
        }
        if let Some(e) = &self.early_stopping {
            if e.min_delta.is_nan() || e.min_delta < 0.0 {
                return Err(Error::param("early_stopping.min_delta", e.min_delta, "≥ 0"));
            }
        }
        Ok(())
    }

    /// Total optimizer steps for a training set with `batches_per_epoch` batches.
    pub fn total_steps(&self, batches_per_epoch: usize) -> usize {
        self.steps.unwrap_or(self.epochs * batches_per_epoch)
    }

    /// The same run, ignoring how long it lasts: two configs that agree here may resume each
    /// other.
    pub fn same_run_as(&self, other: &TrainConfig) -> bool {
        let strip = |c: &TrainConfig| TrainConfig {
            steps: None,
            epochs: 1,
            early_stopping: None,
            ..c.clone()
        };
        strip(self) == strip(other)
    }
}
