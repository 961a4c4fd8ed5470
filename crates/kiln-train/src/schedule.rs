//! Learning-rate schedules: constant, step decay, cosine, linear warm-up then cosine, and
//! reduce-on-plateau. Step-indexed schedules are pure functions of the step, so resuming needs
//! no state; reduce-on-plateau keeps a small [`PlateauState`] that goes into checkpoints.

use kiln_nn::{Error, Result};

use crate::config::Metric;

/// A learning-rate schedule; serialised as `{"kind": "cosine", ...}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// The optimizer's learning rate throughout (the default).
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` steps (`torch.optim.lr_scheduler.StepLR`).
    Step {
        /// Steps between decays (≥ 1).
        step_size: usize,
        /// Decay factor (in (0, 1]).
        gamma: f64,
    },
    /// Cosine from the base rate to `eta_min` over the whole run (`CosineAnnealingLR` with
    /// `T_max` = total steps).
    Cosine {
        /// Final learning rate (≥ 0).
        eta_min: f64,
    },
    /// Linear warm-up from base/warmup to the base rate over `warmup_steps`, then cosine to
    /// `eta_min` over the remaining steps.
    WarmupCosine {
        /// Warm-up steps (≥ 1).
        warmup_steps: usize,
        /// Final learning rate (≥ 0).
        eta_min: f64,
    },
    /// Multiply by `factor` when the validation metric has not improved by more than
    /// `threshold` (relative) for `patience` evaluations (`ReduceLROnPlateau`, rel mode).
    ReduceOnPlateau {
        /// Decay factor (in (0, 1)).
        factor: f64,
        /// Evaluations without improvement before decaying.
        patience: usize,
        /// Relative improvement that counts (≥ 0; PyTorch's default 1e-4).
        threshold: f64,
        /// Lower bound on the learning rate (≥ 0).
        min_lr: f64,
    },
}

impl Schedule {
    /// Check the options.
    pub fn validate(&self) -> Result<()> {
        match self {
            Schedule::Constant => {}
            Schedule::Step { step_size, gamma } => {
                if *step_size == 0 {
                    return Err(Error::param("schedule.step_size", step_size, "≥ 1"));
                }
                if !(*gamma > 0.0 && *gamma <= 1.0) {
                    return Err(Error::param("schedule.gamma", gamma, "in (0, 1]"));
                }
            }
            Schedule::Cosine { eta_min } => check_nonneg("schedule.eta_min", *eta_min)?,
            Schedule::WarmupCosine {
                warmup_steps,
                eta_min,
            } => {
                if *warmup_steps == 0 {
                    return Err(Error::param("schedule.warmup_steps", warmup_steps, "≥ 1"));
                }
                check_nonneg("schedule.eta_min", *eta_min)?;
            }
            Schedule::ReduceOnPlateau {
                factor,
                threshold,
                min_lr,
                ..
            } => {
                if !(*factor > 0.0 && *factor < 1.0) {
                    return Err(Error::param("schedule.factor", factor, "in (0, 1)"));
                }
                check_nonneg("schedule.threshold", *threshold)?;
                check_nonneg("schedule.min_lr", *min_lr)?;
            }
        }
        Ok(())
    }

    /// Learning rate for step `step` (0-based) of `total` steps, from base rate `base`.
    /// Reduce-on-plateau returns `base` here; its decay lives in [`PlateauState`].
    pub fn lr(&self, base: f64, step: usize, total: usize) -> f64 {
        use std::f64::consts::PI;
        let cosine =
            |t: f64, eta_min: f64| eta_min + (base - eta_min) * (1.0 + (PI * t).cos()) / 2.0;
        match self {
            Schedule::Constant | Schedule::ReduceOnPlateau { .. } => base,
            Schedule::Step { step_size, gamma } => base * gamma.powi((step / step_size) as i32),
            Schedule::Cosine { eta_min } => cosine(step as f64 / total.max(1) as f64, *eta_min),
            Schedule::WarmupCosine {
                warmup_steps,
                eta_min,
            } => {
                if step < *warmup_steps {
                    base * (step + 1) as f64 / *warmup_steps as f64
                } else {
                    let span = total.saturating_sub(*warmup_steps).max(1);
                    cosine((step - warmup_steps) as f64 / span as f64, *eta_min)
                }
            }
        }
    }
}

fn check_nonneg(name: &str, v: f64) -> Result<()> {
    if v.is_nan() || v < 0.0 || v.is_infinite() {
        return Err(Error::param(name, v, "a finite number ≥ 0"));
    }
    Ok(())
}

/// State of reduce-on-plateau: current multiplier of the base rate, best metric, evaluations
/// since it improved.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlateauState {
    /// Multiplier applied to the base learning rate.
    pub scale: f64,
    /// Best metric so far.
    pub best: Option<f64>,
    /// Evaluations since the best.
    pub bad_evals: usize,
}

impl Default for PlateauState {
    fn default() -> Self {
        Self {
            scale: 1.0,
            best: None,
            bad_evals: 0,
        }
    }
}

impl PlateauState {
    /// Record a validation `value` of `metric`; decays the scale when the schedule says so.
    pub fn observe(&mut self, schedule: &Schedule, metric: Metric, value: f64, base: f64) {
        if let Schedule::ReduceOnPlateau {
            factor,
            patience,
            threshold,
            min_lr,
        } = schedule
        {
            let better = match self.best {
                None => true,
                Some(b) => match metric {
                    Metric::Loss => value < b * (1.0 - threshold),
                    Metric::Accuracy => value > b * (1.0 + threshold),
                },
            };
            if better {
                self.best = Some(value);
                self.bad_evals = 0;
            } else {
                self.bad_evals += 1;
                if self.bad_evals > *patience {
                    let floor = if base > 0.0 { min_lr / base } else { 0.0 };
                    self.scale = (self.scale * factor).max(floor);
                    self.bad_evals = 0;
                }
            }
        }
    }
}
