//! The [`TrainStep`] trait: what a network offers the trainer (batch in, loss out).

use candle_core::Tensor;

use crate::layers::Mode;
use crate::Result;

/// Sums over one evaluation batch, added up by the trainer over the validation set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EvalSums {
    /// Sum of per-example losses (mean loss × examples).
    pub loss_sum: f64,
    /// Number of examples (or predicted tokens) in the batch.
    pub count: usize,
    /// Correct predictions, for classifiers; `None` for regression.
    pub correct: Option<usize>,
}

impl EvalSums {
    /// Add another batch's sums.
    pub fn add(&mut self, other: EvalSums) {
        self.correct = if self.count == 0 {
            other.correct
        } else {
            match (self.correct, other.correct) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            }
        };
        self.loss_sum += other.loss_sum;
        self.count += other.count;
    }

    /// Mean loss.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.count.max(1) as f64
    }

    /// Accuracy, for classifiers.
    pub fn accuracy(&self) -> Option<f64> {
        self.correct.map(|c| c as f64 / self.count.max(1) as f64)
    }
}

/// A network the trainer can drive: the trainer knows nothing else about it.
pub trait TrainStep {
    /// One mini-batch, as the data loader makes it.
    type Batch;

    /// The scalar mean loss on `batch`; `mode` says training (with the step's dropout
    /// generator) or evaluation.
    fn loss(&self, batch: &Self::Batch, mode: &Mode) -> Result<Tensor>;

    /// Loss sums (and correct counts, for classifiers) on `batch` in evaluation mode.
    fn evaluate(&self, batch: &Self::Batch) -> Result<EvalSums>;
}
