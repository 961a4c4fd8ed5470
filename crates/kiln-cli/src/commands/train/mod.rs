//! `kiln train MODEL`: train a neural network with kiln-train's loop into a run folder.
//!
//! Commands: `mlp` (tables), `cnn` (a conv stack on image rows, or LeNet-5 on MNIST),
//! `lstm` / `gru` / `rnn` (character language models; sample with `kiln generate text`).
//! The run folder holds the training configuration (`config.json`, written before the first
//! step), `history.jsonl`, `checkpoints/`, `best/`, the trained model folder `model/` (read by
//! `kiln eval --model RUN_DIR` and `kiln predict --model RUN_DIR`) and `curves.png`.
//! Progress goes to stderr; Ctrl-C saves a checkpoint and stops (continue with `--resume`).

mod clip;
mod cnn;
mod dalle;
mod gpt;
mod judge;
mod lm;
mod mlp;
mod vqvae;

use cnn::CnnArgs;
use gpt::GptArgs;
use lm::LmArgs;
pub use lm::CHAR_LM_KIND;
use mlp::MlpArgs;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use kiln_core::folder::ModelMeta;
use kiln_core::scale::{Scaler, ScalerKind};
use kiln_core::split::train_test_split;
use kiln_core::{Dataset, Task};
use kiln_nn::init::SeededVarMap;
use kiln_nn::layers::Activation;
use kiln_nn::optim::{AdamConfig, OptimizerConfig, SgdConfig};
use kiln_nn::TrainStep;
use kiln_train::data::{batches_per_epoch, BatchSource, TensorData};
use kiln_train::progress::{Observer, Progress, Silent};
use kiln_train::{history, trainer, RunOptions, Schedule, TrainConfig, TrainReport};
use serde_json::{json, Value};

use crate::data::{self, DataArgs};

/// Arguments of `kiln train`.
#[derive(Args)]
pub struct TrainArgs {
    #[command(subcommand)]
    model: TrainModel,
}

#[derive(Subcommand)]
enum TrainModel {
    /// Multi-layer perceptron for tabular classification or regression.
    Mlp(MlpArgs),
    /// Convolutional image classifier: a conv stack on image rows (`--dataset digits`: 8×8),
    /// or LeNet-5 on MNIST (`--arch lenet5 --mnist data/mnist`).
    Cnn(CnnArgs),
    /// Character-level LSTM language model on a text file (sample with `kiln generate text`).
    Lstm(LmArgs),
    /// Character-level GRU language model on a text file.
    Gru(LmArgs),
    /// Character-level Elman RNN (tanh) language model on a text file.
    Rnn(LmArgs),
    /// GPT-2 language model on a text file, from scratch or fine-tuned (`--init-from`); writes
    /// a Hugging Face GPT-2 folder.
    Gpt(GptArgs),
    /// VQ-VAE image tokenizer (32×32 RGB ↔ 8×8 codes) on captioned shapes or MNIST digits.
    Vqvae(vqvae::VqVaeArgs),
    /// The shapes judge: a CNN reading each grid cell's object, for prompt fidelity.
    Judge(judge::JudgeArgs),
    /// CLIP-style reranker: caption and picture encoders trained contrastively (InfoNCE).
    Clip(clip::ClipArgs),
    /// DALL-E prior over a VQ-VAE's codes (captioned shapes or digits); writes a text-to-image
    /// model folder for `kiln generate image`.
    Dalle(dalle::DalleArgs),
}

/// Optimizers by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OptimizerName {
    /// Stochastic gradient descent (with --momentum).
    Sgd,
    /// Adam (L2 weight decay).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
}

/// Learning-rate schedules by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScheduleName {
    /// The base rate throughout.
    Constant,
    /// Cosine from the base rate to 0 over the run.
    Cosine,
    /// Linear warm-up over --warmup-steps, then cosine to 0.
    WarmupCosine,
    /// Multiply by --gamma every --step-size steps.
    Step,
}

/// Training flags every `kiln train MODEL` takes.
#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Optimizer.
    #[arg(long, value_name = "sgd|adam|adamw", default_value = "adam")]
    optimizer: OptimizerName,
    /// Base learning rate (default: 0.01 for sgd, 0.001 for adam and adamw; 0.002 for adam
    /// with cnn --arch lenet5 --mnist).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Weight decay (L2 for sgd and adam, decoupled for adamw).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    weight_decay: f64,
    /// SGD momentum factor.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    momentum: f64,
    /// Learning-rate schedule (default constant; cosine for cnn --arch lenet5 --mnist).
    #[arg(long, value_name = "constant|cosine|warmup-cosine|step")]
    schedule: Option<ScheduleName>,
    /// Warm-up steps of --schedule warmup-cosine.
    #[arg(long, value_name = "N", default_value_t = 10)]
    warmup_steps: usize,
    /// Steps between decays of --schedule step.
    #[arg(long, value_name = "N", default_value_t = 100)]
    step_size: usize,
    /// Decay factor of --schedule step.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 0.1,
        allow_negative_numbers = true
    )]
    gamma: f64,
    /// Examples per mini-batch (default 32; 64 for cnn --arch lenet5 --mnist).
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Passes over the training rows (default 10, or 3 for cnn --arch lenet5 --mnist, unless
    /// --steps is given).
    #[arg(long, value_name = "N", conflicts_with = "steps")]
    epochs: Option<usize>,
    /// Total optimizer steps (instead of --epochs).
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// Evaluate on the validation rows every N steps (default: each epoch and at the end).
    #[arg(long, value_name = "N")]
    eval_every: Option<usize>,
    /// Save a checkpoint every N steps (one is always saved at the end and on Ctrl-C).
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<usize>,
    /// Clip gradients to this global L2 norm.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    clip_grad_norm: Option<f64>,
    /// Seed of the split, the initial weights, the shuffles and dropout.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Run folder (config.json, history.jsonl, checkpoints, model/, curves.png).
    #[arg(long, value_name = "RUN_DIR", default_value = "runs/latest")]
    out: PathBuf,
    /// Continue the run in --out from its latest checkpoint (same settings; --epochs or
    /// --steps may grow).
    #[arg(long)]
    resume: bool,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
    /// Print one JSON object on stdout at the end.
    #[arg(long)]
    json: bool,
}

/// Validation split and scaling of a table.
#[derive(Args, Debug, Clone)]
struct SplitArgs {
    /// Fraction of the rows held out for validation.
    #[arg(
        long,
        value_name = "F",
        default_value_t = 0.2,
        allow_negative_numbers = true
    )]
    test_size: f64,
    /// Keep the class proportions in the validation split (classification).
    #[arg(long)]
    stratify: bool,
    /// Do not standardise the features (by default they are, fitted on the training rows and
    /// saved with the model).
    #[arg(long)]
    no_scale: bool,
}

fn parse_activation(s: &str) -> std::result::Result<Activation, String> {
    serde_json::from_value(Value::String(s.to_lowercase())).map_err(|_| {
        format!("unknown activation {s:?}: expected relu, tanh, sigmoid, gelu, silu or identity")
    })
}

impl RunArgs {
    fn train_config(&self, model: Value) -> Result<TrainConfig> {
        let optimizer = match self.optimizer {
            OptimizerName::Sgd => OptimizerConfig::Sgd(SgdConfig {
                lr: self.lr.unwrap_or(0.01),
                momentum: self.momentum,
                weight_decay: self.weight_decay,
                ..SgdConfig::default()
            }),
            name => {
                if self.momentum != 0.0 {
                    bail!("--momentum applies to --optimizer sgd only");
                }
                let c = AdamConfig {
                    lr: self.lr.unwrap_or(0.001),
                    weight_decay: self.weight_decay,
                    ..AdamConfig::default()
                };
                if name == OptimizerName::Adam {
                    OptimizerConfig::Adam(c)
                } else {
                    OptimizerConfig::Adamw(c)
                }
            }
        };
        let schedule = match self.schedule.unwrap_or(ScheduleName::Constant) {
            ScheduleName::Constant => Schedule::Constant,
            ScheduleName::Cosine => Schedule::Cosine { eta_min: 0.0 },
            ScheduleName::WarmupCosine => Schedule::WarmupCosine {
                warmup_steps: self.warmup_steps,
                eta_min: 0.0,
            },
            ScheduleName::Step => Schedule::Step {
                step_size: self.step_size,
                gamma: self.gamma,
            },
        };
        let config = TrainConfig {
            model,
            optimizer,
            schedule,
            batch_size: self.batch_size.unwrap_or(32),
            epochs: self.epochs.unwrap_or(10),
            steps: self.steps,
            seed: self.seed,
            eval_every: self.eval_every,
            checkpoint_every: self.checkpoint_every,
            clip_grad_norm: self.clip_grad_norm,
            ..TrainConfig::default()
        };
        config.validate().context("invalid training settings")?;
        Ok(config)
    }
}

/// Run `kiln train`.
pub fn run(args: TrainArgs) -> Result<()> {
    match args.model {
        TrainModel::Mlp(a) => mlp::train_mlp(a),
        TrainModel::Cnn(a) => cnn::train_cnn(a),
        TrainModel::Lstm(a) => lm::train_lm(a, kiln_nn::rnn::CellKind::Lstm),
        TrainModel::Gru(a) => lm::train_lm(a, kiln_nn::rnn::CellKind::Gru),
        TrainModel::Rnn(a) => lm::train_lm(a, kiln_nn::rnn::CellKind::RnnTanh),
        TrainModel::Gpt(a) => gpt::train_gpt(a),
        TrainModel::Vqvae(a) => vqvae::train_vqvae(a),
        TrainModel::Judge(a) => judge::train_judge(a),
        TrainModel::Clip(a) => clip::train_clip(a),
        TrainModel::Dalle(a) => dalle::train_dalle(a),
    }
}

/// Set a flag on Ctrl-C: the trainer then saves a checkpoint and returns.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            // a second Ctrl-C: the user does not want to wait for the checkpoint
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(flag)
}

/// Progress on stderr: a bar on a terminal, plain lines otherwise, nothing with --quiet.
fn observer(quiet: bool) -> Box<dyn Observer> {
    if quiet {
        Box::new(Silent)
    } else {
        let bar = std::io::stderr().is_terminal();
        Box::new(Progress::new(std::io::stderr(), bar))
    }
}

/// Features and targets of `ds` as tensors, after `scaler`.
fn tensors(ds: &Dataset, scaler: Option<&Scaler>) -> Result<TensorData> {
    let mut ds = ds.clone();
    if let Some(s) = scaler {
        ds.x = s.transform(ds.x.view())?;
    }
    Ok(TensorData::from_dataset(&ds)?)
}

/// Examples seen by the steps `from..to` of a run with `n` rows and this batch size.
fn samples_seen(from: usize, to: usize, n: usize, batch_size: usize) -> usize {
    let bpe = batches_per_epoch(n, batch_size, false).max(1);
    (from..to)
        .map(|s| {
            if s % bpe == bpe - 1 && !n.is_multiple_of(batch_size) {
                n % batch_size
            } else {
                batch_size
            }
        })
        .sum()
}

/// The final training metrics look at no more than this many training examples (the first
/// ones), so a large corpus does not cost a second pass over all of it at the end.
const TRAIN_MEASURE_MAX: usize = 10_000;

/// The first `n` examples of a batch source.
struct Head<'a, S> {
    source: &'a S,
    n: usize,
}

impl<S: BatchSource> BatchSource for Head<'_, S> {
    type Batch = S::Batch;

    fn len(&self) -> usize {
        self.n.min(self.source.len())
    }

    fn batch(&self, indices: &[usize]) -> kiln_nn::Result<S::Batch> {
        self.source.batch(indices)
    }
}

/// Loss (and accuracy) of `model` over the first `limit` examples of `data`, and how many
/// examples that was.
fn measure<M, S>(model: &M, data: &S, batch_size: usize, limit: usize) -> Result<Value>
where
    M: TrainStep<Batch = S::Batch>,
    S: BatchSource,
{
    let head = Head {
        source: data,
        n: limit,
    };
    let sums = trainer::evaluate(model, &head, batch_size)?;
    let mut v = json!({ "loss": sums.loss(), "examples": head.len() });
    if let Some(a) = sums.accuracy() {
        v["accuracy"] = json!(a);
    }
    Ok(v)
}

/// A labelled table split into training and validation rows, scaled on the training rows.
struct Prepared {
    ds: Dataset,
    train: TensorData,
    valid: TensorData,
    meta: ModelMeta,
}

fn prepare(data_args: &DataArgs, task: Task, split: &SplitArgs, seed: u64) -> Result<Prepared> {
    let ds = data::load(data_args, task, false)
        .with_context(|| format!("cannot load {}", data_args.describe()))?;
    let labels = ds.labels();
    let stratify = (split.stratify && task == Task::Classification).then_some(labels.as_slice());
    let (tr, va) = train_test_split(ds.n_samples(), split.test_size, seed, stratify)
        .context("cannot split the data (see --test-size)")?;
    let (train_ds, valid_ds) = (ds.select(&tr), ds.select(&va));
    let scaler = if split.no_scale {
        None
    } else {
        Some(Scaler::fit(ScalerKind::Standard, train_ds.x.view())?)
    };
    let train = tensors(&train_ds, scaler.as_ref())?;
    let valid = tensors(&valid_ds, scaler.as_ref())?;
    let meta = ModelMeta {
        features: ds.feature_names.clone(),
        target: ds.target_name.clone(),
        classes: ds.classes.clone(),
        preprocessing: scaler,
    };
    Ok(Prepared {
        ds,
        train,
        valid,
        meta,
    })
}

/// Train, save `RUN_DIR/model` (kind, model config, names and scaling), measure and report.
#[allow(clippy::too_many_arguments)]
fn run_and_report<M, S>(
    model: &M,
    vars: &SeededVarMap,
    train: &S,
    valid: &S,
    config: &TrainConfig,
    run: &RunArgs,
    (kind, model_json, meta): (&str, Value, &ModelMeta),
    classifier: bool,
) -> Result<()>
where
    M: TrainStep<Batch = S::Batch>,
    S: BatchSource,
{
    let t0 = Instant::now();
    let report = fit(model, vars, train, valid, config, run)?;
    let wall = t0.elapsed().as_secs_f64();
    kiln_models::folder::save(
        &run.out.join("model"),
        kind,
        meta,
        model_json,
        vars.var_map(),
    )
    .with_context(|| format!("cannot save the model into {}", run.out.display()))?;
    let final_train = measure(model, train, config.batch_size, TRAIN_MEASURE_MAX)?;
    // The trainer evaluated the whole validation set after the last step (the same pass
    // `measure` would make): reuse it when it is there (not after an interruption).
    let last_eval = history::read(&run.out.join("history.jsonl"))?
        .into_iter()
        .rev()
        .find(|r| r.kind == "eval" && r.step == report.steps);
    let final_valid = match last_eval {
        Some(r) => {
            let mut v = json!({ "loss": r.loss, "examples": valid.len() });
            if let Some(a) = r.accuracy {
                v["accuracy"] = json!(a);
            }
            v
        }
        None => measure(model, valid, config.batch_size, usize::MAX)?,
    };
    let seen = samples_seen(
        report.start_step,
        report.steps,
        train.len(),
        config.batch_size,
    );
    finish(
        run,
        &report,
        final_train,
        final_valid,
        wall,
        seen,
        classifier,
    )
}

/// Drive the trainer with progress and the Ctrl-C flag.
fn fit<M, S>(
    model: &M,
    vars: &SeededVarMap,
    train: &S,
    valid: &S,
    config: &TrainConfig,
    run: &RunArgs,
) -> Result<TrainReport>
where
    M: TrainStep<Batch = S::Batch>,
    S: BatchSource,
{
    if run.resume && !run.out.join("config.json").is_file() {
        bail!(
            "--resume: {} holds no run to continue (no config.json)",
            run.out.display()
        );
    }
    let mut options = RunOptions::new(&run.out);
    options.resume = run.resume;
    options.stop = Some(stop_flag()?);
    let mut obs = observer(run.quiet);
    let report = trainer::train(
        model,
        vars.var_map(),
        train,
        Some(valid),
        config,
        &options,
        obs.as_mut(),
    )
    .with_context(|| format!("training into {}", run.out.display()))?;
    Ok(report)
}

/// Draw the curves, print the summary (text or JSON).
fn finish(
    run: &RunArgs,
    report: &TrainReport,
    final_train: Value,
    final_valid: Value,
    wall: f64,
    seen: usize,
    classifier: bool,
) -> Result<()> {
    let plot = run.out.join("curves.png");
    draw_curves(&run.out.join("history.jsonl"), &plot, classifier)?;
    let rate = if wall > 0.0 { seen as f64 / wall } else { 0.0 };
    if report.interrupted && !run.quiet {
        eprintln!(
            "interrupted at step {}: checkpoint saved; continue with --resume",
            report.steps
        );
    }
    if run.json {
        let out = json!({
            "train": final_train,
            "validation": final_valid,
            "steps": report.steps,
            "start_step": report.start_step,
            "interrupted": report.interrupted,
            "wall_seconds": wall,
            "samples_per_second": rate,
            "run_dir": run.out,
            "checkpoint": report.checkpoint,
            "plot": plot,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let fmt = |v: &Value| {
            let mut s = format!("loss {:.4}", v["loss"].as_f64().unwrap_or(f64::NAN));
            if let Some(a) = v["accuracy"].as_f64() {
                s += &format!("  accuracy {a:.4}");
            }
            s += &format!("  ({} examples)", v["examples"]);
            s
        };
        println!(
            "trained {} steps (from step {}) in {wall:.2} s, {rate:.0} samples/s",
            report.steps, report.start_step
        );
        println!("train       {}", fmt(&final_train));
        println!("validation  {}", fmt(&final_valid));
        println!("run folder  {}", run.out.display());
        println!("curves      {}", plot.display());
    }
    Ok(())
}

/// Loss curves (training records, validation records) and, for classifiers, validation
/// accuracy, from `history.jsonl`.
pub(crate) fn draw_curves(history_path: &Path, png: &Path, classifier: bool) -> Result<()> {
    let records = history::read(history_path)?;
    let series = |kind: &str, name: &str, acc: bool| kiln_plot::Series {
        name: name.to_string(),
        x: records
            .iter()
            .filter(|r| r.kind == kind && (!acc || r.accuracy.is_some()))
            .map(|r| r.step as f64)
            .collect(),
        y: records
            .iter()
            .filter(|r| r.kind == kind && (!acc || r.accuracy.is_some()))
            .map(|r| {
                if acc {
                    r.accuracy.unwrap_or(0.0)
                } else {
                    r.loss
                }
            })
            .collect(),
    };
    let mut all = vec![
        series("train", "train loss", false),
        series("eval", "validation loss", false),
    ];
    if classifier {
        all.push(series("eval", "validation accuracy", true));
    }
    all.retain(|s| !s.x.is_empty());
    if all.is_empty() {
        return Ok(());
    }
    let chart = kiln_plot::Curves {
        title: "training curves".into(),
        x_label: "step".into(),
        y_label: if classifier {
            "loss / accuracy".into()
        } else {
            "loss".into()
        },
        series: all,
        log_y: false,
    };
    kiln_plot::curves(png, &chart).with_context(|| format!("cannot draw {}", png.display()))
}
