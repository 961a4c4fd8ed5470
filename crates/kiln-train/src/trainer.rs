//! The training loop.
//!
//! Run folder layout:
//! ```text
//! run/config.json                        the TrainConfig, written before the first step
//! run/history.jsonl                      one record per logged step and per evaluation
//! run/checkpoints/step-00000100/         model.safetensors, optimizer.safetensors, state.json
//! run/checkpoints/latest.json            {"step": 100}
//! run/best/model.safetensors             the weights with the best validation metric
//! ```
//! Everything a step depends on is a function of the checkpoint: the weights and buffers, the
//! optimizer state, the step number (which fixes the epoch's shuffle, the dropout generator and
//! the scheduled learning rate) and the small [`TrainerState`]. So a run of 2N steps and a run
//! of N steps resumed for N more end with the same weights, bit for bit. (Schedules that
//! depend on the run's length — cosine, warm-up then cosine — see a different length when a
//! finished N-step run is extended to 2N; a 2N-step run interrupted at N resumes exactly.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::VarMap;
use kiln_nn::optim::{clip_grad_norm, Optimizer, Params};
use kiln_nn::{Error, EvalSums, Mode, Result, TrainStep};

use crate::config::{Metric, TrainConfig};
use crate::data::{batches_per_epoch, epoch_batches, mix, BatchSource};
use crate::history::{self, Record};
use crate::progress::Observer;
use crate::schedule::PlateauState;

/// Where the run lives and how it is driven.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run folder (created if missing).
    pub run_dir: PathBuf,
    /// Continue from the latest checkpoint in `run_dir` instead of starting afresh.
    pub resume: bool,
    /// When this flag becomes true (Ctrl-C), save a checkpoint and return.
    pub stop: Option<Arc<AtomicBool>>,
    /// Checkpoints to keep (older ones are deleted; at least 1).
    pub keep_checkpoints: usize,
}

impl RunOptions {
    /// A fresh run in `run_dir`, keeping the 3 newest checkpoints.
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        Self {
            run_dir: run_dir.into(),
            resume: false,
            stop: None,
            keep_checkpoints: 3,
        }
    }
}

/// The trainer's own state, saved in each checkpoint's `state.json`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    /// Best validation metric so far and the step it was reached.
    pub best: Option<(usize, f64)>,
    /// Evaluations since the best (early stopping).
    pub bad_evals: usize,
    /// Reduce-on-plateau state.
    pub plateau: PlateauState,
    /// Step of the last evaluation.
    pub last_eval_step: Option<usize>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Step the run started from (0, or the checkpoint it resumed).
    pub start_step: usize,
    /// Steps done in all.
    pub steps: usize,
    /// Mean training loss over the last logging window.
    pub last_loss: Option<f64>,
    /// Best validation metric and its step.
    pub best: Option<(usize, f64)>,
    /// Stopped by early stopping.
    pub early_stopped: bool,
    /// Stopped by the stop flag (a checkpoint was saved).
    pub interrupted: bool,
    /// The last checkpoint folder.
    pub checkpoint: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| Error::shape(format!("serialising: {e}")))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&text).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Evaluate `model` over all of `data` in order, `batch_size` examples at a time.
pub fn evaluate<M, S>(model: &M, data: &S, batch_size: usize) -> Result<EvalSums>
where
    M: TrainStep<Batch = S::Batch>,
    S: BatchSource,
{
    let mut sums = EvalSums::default();
    for idx in epoch_batches(data.len(), batch_size.max(1), false, false, 0, 0) {
        sums.add(model.evaluate(&data.batch(&idx)?)?);
    }
    Ok(sums)
}

/// Train `model` (whose variables live in `vars`) on `train`, evaluating on `valid`.
pub fn train<M, S>(
    model: &M,
    vars: &VarMap,
    train: &S,
    valid: Option<&S>,
    config: &TrainConfig,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<TrainReport>
where
    M: TrainStep<Batch = S::Batch>,
    S: BatchSource,
{
    config.validate()?;
    if train.is_empty() {
        return Err(Error::shape("the training set is empty".to_string()));
    }
    let bpe = batches_per_epoch(train.len(), config.batch_size, config.drop_last);
    if bpe == 0 {
        return Err(Error::shape(format!(
            "drop_last with batch_size {} leaves no batch from {} examples",
            config.batch_size,
            train.len()
        )));
    }
    let total = config.total_steps(bpe);
    let dir = &options.run_dir;
    let ckpt_root = dir.join("checkpoints");
    let config_path = dir.join("config.json");
    let history_path = dir.join("history.jsonl");
    std::fs::create_dir_all(dir).map_err(io(dir))?;

    let params = Params::from_var_map(vars)?;
    let mut opt = Optimizer::new(config.optimizer.clone(), params.clone())?;
    let mut state = TrainerState::default();

    if options.resume {
        let prev: TrainConfig = read_json(&config_path)?;
        if !prev.same_run_as(config) {
            return Err(Error::Checkpoint {
                path: config_path,
                message: "the run folder holds a different configuration; only steps, epochs and \
                          early stopping may change when resuming"
                    .into(),
            });
        }
        let latest: serde_json::Value = read_json(&ckpt_root.join("latest.json"))?;
        let step = latest["step"].as_u64().ok_or_else(|| Error::Checkpoint {
            path: ckpt_root.join("latest.json"),
            message: "expected {\"step\": N}".into(),
        })? as usize;
        let cdir = ckpt_root.join(format!("step-{step:08}"));
        let mut map = vars.clone();
        map.load(cdir.join("model.safetensors"))?;
        let opt_state =
            candle_core::safetensors::load(cdir.join("optimizer.safetensors"), &Device::Cpu)?;
        opt.load_state_tensors(&opt_state)?;
        state = read_json(&cdir.join("state.json"))?;
        history::truncate_after(&history_path, state.step)?;
    } else if config_path.exists() {
        return Err(Error::Checkpoint {
            path: config_path,
            message: "the run folder already holds a run: resume it or choose another folder"
                .into(),
        });
    }
    // The full configuration goes into the run folder before the first step.
    kiln_core::folder::write_atomic(&config_path, &to_json(config)?)?;
    observer.on_start(state.step, total);

    let base_lr = config.optimizer.lr();
    let start_step = state.step;
    let mut epoch_cache: Option<(usize, Vec<Vec<usize>>)> = None;
    let (mut win_loss, mut win_steps, mut win_samples) = (0f64, 0usize, 0usize);
    let mut win_start = Instant::now();
    let mut last_loss = None;
    let mut early_stopped = false;
    let mut interrupted = false;
    let mut last_ckpt = None;
    let mut grad_norm = None;

    while state.step < total {
        let step = state.step;
        let epoch = step / bpe;
        if epoch_cache.as_ref().map(|c| c.0) != Some(epoch) {
            epoch_cache = Some((
                epoch,
                epoch_batches(
                    train.len(),
                    config.batch_size,
                    config.drop_last,
                    true,
                    config.seed,
                    epoch,
                ),
            ));
        }
        let idx = match &epoch_cache {
            Some((_, b)) => &b[step % bpe],
            None => unreachable!("epoch batches were just computed"),
        };
        let batch = train.batch(idx)?;
        let lr = config.schedule.lr(base_lr, step, total) * state.plateau.scale;
        opt.set_lr(lr);
        let mode = Mode::train(mix(config.seed, step as u64 + 1));
        let loss = model.loss(&batch, &mode)?;
        if loss.elem_count() != 1 {
            return Err(Error::shape(format!(
                "the loss must be a scalar, got shape {:?}",
                loss.dims()
            )));
        }
        let loss_value = loss.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        if !loss_value.is_finite() {
            return Err(Error::Core(kiln_core::Error::Numerical(format!(
                "the training loss is {loss_value} at step {}",
                step + 1
            ))));
        }
        let mut grads = loss.backward()?;
        if let Some(max) = config.clip_grad_norm {
            grad_norm = Some(clip_grad_norm(&mut grads, &params, max)?);
        }
        opt.step(&grads)?;
        state.step += 1;
        let step = state.step;
        observer.on_step(step, loss_value);
        win_loss += loss_value;
        win_steps += 1;
        win_samples += idx.len();

        if step % config.log_every == 0 || step == total {
            let secs = win_start.elapsed().as_secs_f64();
            let rec = Record {
                kind: "train".into(),
                step,
                epoch: step as f64 / bpe as f64,
                loss: win_loss / win_steps as f64,
                accuracy: None,
                lr: Some(lr),
                grad_norm,
                samples_per_sec: (secs > 0.0).then(|| win_samples as f64 / secs),
            };
            last_loss = Some(rec.loss);
            history::append(&history_path, &rec)?;
            observer.on_record(&rec);
            (win_loss, win_steps, win_samples) = (0.0, 0, 0);
            win_start = Instant::now();
        }

        let eval_now = match config.eval_every {
            Some(n) => step % n == 0,
            None => step % bpe == 0,
        } || step == total;
        if let (Some(valid), true) = (valid, eval_now) {
            state.last_eval_step = Some(step);
            let sums = evaluate(model, valid, config.batch_size)?;
            let rec = Record {
                kind: "eval".into(),
                step,
                epoch: step as f64 / bpe as f64,
                loss: sums.loss(),
                accuracy: sums.accuracy(),
                lr: None,
                grad_norm: None,
                samples_per_sec: None,
            };
            history::append(&history_path, &rec)?;
            observer.on_record(&rec);
            let value = match config.metric {
                Metric::Loss => rec.loss,
                Metric::Accuracy => rec.accuracy.ok_or_else(|| {
                    Error::param(
                        "metric",
                        "accuracy",
                        "a classifier (this model reports no accuracy)",
                    )
                })?,
            };
            state
                .plateau
                .observe(&config.schedule, config.metric, value, base_lr);
            let min_delta = config.early_stopping.as_ref().map_or(0.0, |e| e.min_delta);
            let improved = match state.best {
                None => true,
                Some((_, b)) => config.metric.improves(value, b, min_delta),
            };
            if improved {
                state.best = Some((step, value));
                state.bad_evals = 0;
                let best_dir = dir.join("best");
                std::fs::create_dir_all(&best_dir).map_err(io(&best_dir))?;
                let tmp = best_dir.join("model.safetensors.tmp");
                vars.save(&tmp)?;
                let dst = best_dir.join("model.safetensors");
                std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
                kiln_core::folder::write_atomic(
                    &best_dir.join("state.json"),
                    &to_json(
                        &serde_json::json!({"step": step, "metric": config.metric, "value": value}),
                    )?,
                )?;
            } else {
                state.bad_evals += 1;
            }
            if let Some(es) = &config.early_stopping {
                if state.bad_evals >= es.patience.max(1) {
                    early_stopped = true;
                }
            }
        }

        let stop = options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst));
        let periodic = config.checkpoint_every.is_some_and(|n| step % n == 0);
        if periodic || stop || early_stopped || step == total {
            last_ckpt = Some(save_checkpoint(
                &ckpt_root,
                vars,
                &opt,
                &state,
                options.keep_checkpoints,
            )?);
        }
        if stop {
            interrupted = true;
            break;
        }
        if early_stopped {
            break;
        }
    }
    observer.on_end();
    let checkpoint = match last_ckpt {
        Some(c) => c,
        // resumed a run that was already complete: point at its last checkpoint
        None => save_checkpoint(&ckpt_root, vars, &opt, &state, options.keep_checkpoints)?,
    };
    Ok(TrainReport {
        start_step,
        steps: state.step,
        last_loss,
        best: state.best,
        early_stopped,
        interrupted,
        checkpoint,
    })
}

/// Write `checkpoints/step-N/{model,optimizer}.safetensors` and `state.json` (into a temporary
/// folder renamed into place), point `latest.json` at it and delete old checkpoints.
fn save_checkpoint(
    root: &Path,
    vars: &VarMap,
    opt: &Optimizer,
    state: &TrainerState,
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(io(root))?;
    let name = format!("step-{:08}", state.step);
    let tmp = root.join(format!(".tmp-{name}"));
    let dst = root.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    vars.save(tmp.join("model.safetensors"))?;
    candle_core::safetensors::save(&opt.state_tensors()?, tmp.join("optimizer.safetensors"))?;
    std::fs::write(tmp.join("state.json"), to_json(state)?).map_err(io(&tmp))?;
    if dst.exists() {
        std::fs::remove_dir_all(&dst).map_err(io(&dst))?;
    }
    std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    kiln_core::folder::write_atomic(
        &root.join("latest.json"),
        &to_json(&serde_json::json!({"step": state.step}))?,
    )?;
    // prune: keep the newest `keep` step folders
    let mut steps: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(io(root))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-"))
        })
        .collect();
    steps.sort();
    let keep = keep.max(1);
    if steps.len() > keep {
        for old in &steps[..steps.len() - keep] {
            if old != &dst {
                std::fs::remove_dir_all(old).map_err(io(old))?;
            }
        }
    }
    Ok(dst)
}
