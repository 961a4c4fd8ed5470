//! The training loop: exact resume, config and history files, evaluation, best model, early
//! stopping, schedules, clipping, the stop flag and bad configurations.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::Linear;
use kiln_nn::init::SeededVarMap;
use kiln_nn::layers::{self, BatchNorm, Dropout};
use kiln_nn::optim::{AdamConfig, OptimizerConfig, SgdConfig};
use kiln_nn::{loss, EvalSums, Mode, TrainStep};
use kiln_train::data::{epoch_batches, BatchSource, TensorData, TokenWindows};
use kiln_train::progress::{Observer, Progress, Silent};
use kiln_train::{history, trainer, EarlyStopping, Metric, RunOptions, Schedule, TrainConfig};

/// A tiny classifier with batch norm and dropout, so resume must restore buffers and replay
/// dropout masks.
struct Net {
    fc1: Linear,
    bn: BatchNorm,
    drop: Dropout,
    fc2: Linear,
}

impl Net {
    fn new(vars: &SeededVarMap) -> Self {
        let vb = vars.var_builder();
        Self {
            fc1: layers::linear(4, 16, vb.pp("fc1")).unwrap(),
            bn: BatchNorm::new(16, vb.pp("bn")).unwrap(),
            drop: Dropout::new(0.2).unwrap(),
            fc2: layers::linear(16, 3, vb.pp("fc2")).unwrap(),
        }
    }

    fn forward(&self, x: &Tensor, mode: &Mode) -> kiln_nn::Result<Tensor> {
        let h = layers::apply(&self.fc1, x)?;
        let h = self.bn.forward(&h, mode)?.relu()?;
        let h = self.drop.forward(&h, mode)?;
        layers::apply(&self.fc2, &h)
    }
}

impl TrainStep for Net {
    type Batch = (Tensor, Tensor);
    fn loss(&self, (x, y): &Self::Batch, mode: &Mode) -> kiln_nn::Result<Tensor> {
        loss::cross_entropy(&self.forward(x, mode)?, y)
    }
    fn evaluate(&self, (x, y): &Self::Batch) -> kiln_nn::Result<EvalSums> {
        let logits = self.forward(x, &Mode::eval())?;
        let n = x.dim(0)?;
        let l = loss::cross_entropy(&logits, y)?.to_scalar::<f32>()? as f64;
        Ok(EvalSums {
            loss_sum: l * n as f64,
            count: n,
            correct: Some(loss::correct(&logits, y)?),
        })
    }
}

/// Three Gaussian blobs in 4-d.
fn blobs(n: usize, seed: u64) -> TensorData {
    let x = kiln_nn::init::sample(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &(n, 4).into(),
        &mut kiln_core::rng(seed),
    )
    .unwrap();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    let y = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    let centres = Tensor::new(
        &[[2f32, 0., 0., 1.], [-2., 1., 0., 0.], [0., -2., 2., 0.]],
        &Device::Cpu,
    )
    .unwrap();
    let x = (x + centres.index_select(&y, 0).unwrap()).unwrap();
    TensorData::new(x, y).unwrap()
}

fn config(steps: usize) -> TrainConfig {
    TrainConfig {
        optimizer: OptimizerConfig::Adamw(AdamConfig {
            lr: 0.01,
            weight_decay: 0.01,
            ..Default::default()
        }),
        schedule: Schedule::WarmupCosine {
            warmup_steps: 3,
            eta_min: 0.001,
        },
        batch_size: 8,
        steps: Some(steps),
        seed: 11,
        eval_every: Some(5),
        log_every: 2,
        checkpoint_every: Some(5),
        clip_grad_norm: Some(1.0),
        ..Default::default()
    }
}

fn weights(dir: &Path) -> HashMap<String, Vec<f32>> {
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("checkpoints/latest.json")).unwrap())
            .unwrap();
    let step = latest["step"].as_u64().unwrap();
    let t = candle_core::safetensors::load(
        dir.join(format!("checkpoints/step-{step:08}/model.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    t.into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn run(dir: &Path, cfg: &TrainConfig, resume: bool, seed: u64) -> kiln_train::TrainReport {
    let vars = SeededVarMap::new(seed);
    let net = Net::new(&vars);
    let (train, valid) = (blobs(60, 1), blobs(30, 2));
    let opts = RunOptions {
        resume,
        ..RunOptions::new(dir)
    };
    trainer::train(
        &net,
        vars.var_map(),
        &train,
        Some(&valid),
        cfg,
        &opts,
        &mut Silent,
    )
    .unwrap()
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A schedule that depends only on the step (warm-up/cosine depend on the run's length,
    // see `interrupted_run_resumes_exactly_with_a_length_dependent_schedule`).
    let config = |steps| TrainConfig {
        schedule: Schedule::Step {
            step_size: 4,
            gamma: 0.7,
        },
        ..config(steps)
    };
    // 2N = 20 steps straight (60 examples / 8 = 8 batches per epoch, so epochs cross too)
    run(a.path(), &config(20), false, 3);
    // N = 10 steps, then resumed for N more — from a model initialised with a different seed,
    // so everything must come from the checkpoint.
    let r1 = run(b.path(), &config(10), false, 3);
    assert_eq!(r1.steps, 10);
    let r2 = run(b.path(), &config(20), true, 99);
    assert_eq!((r2.start_step, r2.steps), (10, 20));
    let (wa, wb) = (weights(a.path()), weights(b.path()));
    assert_eq!(
        wa.len(),
        8,
        "fc1, fc2 weights and biases + bn weight/bias/running stats: {:?}",
        wa.keys()
    );
    assert_eq!(
        wa, wb,
        "weights and buffers after 20 steps equal bit for bit"
    );
    // the histories agree too (apart from timing)
    let strip = |p: &Path| {
        history::read(&p.join("history.jsonl"))
            .unwrap()
            .into_iter()
            .map(|mut r| {
                r.samples_per_sec = None;
                r
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(a.path()), strip(b.path()));
}

#[test]
fn interrupted_run_resumes_exactly_with_a_length_dependent_schedule() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(a.path(), &config(20), false, 3);
    // the same 20-step run (warm-up then cosine over 20 steps), stopped after step 10 ...
    let flag = Arc::new(AtomicBool::new(false));
    let vars = SeededVarMap::new(3);
    let net = Net::new(&vars);
    let mut probe = Probe {
        dir: b.path().to_path_buf(),
        saw_config: false,
        stop_at: Some((10, flag.clone())),
        steps: vec![],
    };
    let opts = RunOptions {
        stop: Some(flag),
        ..RunOptions::new(b.path())
    };
    let r = trainer::train(
        &net,
        vars.var_map(),
        &blobs(60, 1),
        Some(&blobs(30, 2)),
        &config(20),
        &opts,
        &mut probe,
    )
    .unwrap();
    assert!(r.interrupted && r.steps == 10);
    // ... and resumed
    let r2 = run(b.path(), &config(20), true, 99);
    assert_eq!((r2.start_step, r2.steps), (10, 20));
    assert_eq!(weights(a.path()), weights(b.path()));
}

#[test]
fn different_seeds_give_different_runs_and_same_seed_same_run() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    run(a.path(), &config(6), false, 3);
    run(b.path(), &config(6), false, 3);
    run(
        c.path(),
        &TrainConfig {
            seed: 12,
            ..config(6)
        },
        false,
        3,
    );
    assert_eq!(weights(a.path()), weights(b.path()));
    assert_ne!(weights(a.path()), weights(c.path()));
}

/// Checks that config.json exists when the first step starts, and can raise the stop flag.
struct Probe {
    dir: std::path::PathBuf,
    saw_config: bool,
    stop_at: Option<(usize, Arc<AtomicBool>)>,
    steps: Vec<usize>,
}

impl Observer for Probe {
    fn on_start(&mut self, _: usize, _: usize) {
        self.saw_config = self.dir.join("config.json").exists();
    }
    fn on_step(&mut self, step: usize, _: f64) {
        self.steps.push(step);
        if let Some((s, flag)) = &self.stop_at {
            if step == *s {
                flag.store(true, Ordering::SeqCst);
            }
        }
    }
}

#[test]
fn config_history_best_model_and_loss_falls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        steps: None,
        epochs: 6,
        eval_every: None,
        log_every: 4,
        ..config(0)
    };
    let vars = SeededVarMap::new(0);
    let net = Net::new(&vars);
    let (train, valid) = (blobs(60, 1), blobs(30, 2));
    let mut probe = Probe {
        dir: dir.path().to_path_buf(),
        saw_config: false,
        stop_at: None,
        steps: vec![],
    };
    let report = trainer::train(
        &net,
        vars.var_map(),
        &train,
        Some(&valid),
        &cfg,
        &RunOptions::new(dir.path()),
        &mut probe,
    )
    .unwrap();
    assert!(
        probe.saw_config,
        "config.json is written before the first step"
    );
    assert_eq!(report.steps, 48);
    let written: TrainConfig =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(written, cfg);
    let hist = history::read(&dir.path().join("history.jsonl")).unwrap();
    let evals: Vec<_> = hist.iter().filter(|r| r.kind == "eval").collect();
    let trains: Vec<_> = hist.iter().filter(|r| r.kind == "train").collect();
    assert_eq!(
        evals.iter().map(|r| r.step).collect::<Vec<_>>(),
        [8, 16, 24, 32, 40, 48],
        "one evaluation per epoch"
    );
    assert_eq!(trains.len(), 12);
    assert!(
        trains.last().unwrap().loss < 0.6 * trains[0].loss,
        "loss falls: {} -> {}",
        trains[0].loss,
        trains.last().unwrap().loss
    );
    assert!(evals.last().unwrap().accuracy.unwrap() > 0.8);
    let (best_step, best) = report.best.unwrap();
    let best_rec = evals.iter().find(|r| r.step == best_step).unwrap();
    assert_eq!(best_rec.loss, best);
    assert!(evals.iter().all(|r| r.loss >= best));
    assert!(dir.path().join("best/model.safetensors").exists());
    // starting afresh in a folder that holds a run is refused
    let e = trainer::train(
        &net,
        vars.var_map(),
        &train,
        Some(&valid),
        &cfg,
        &RunOptions::new(dir.path()),
        &mut Silent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("already holds a run"), "{e}");
}

#[test]
fn early_stopping_stops_after_patience_evaluations() {
    let dir = tempfile::tempdir().unwrap();
    // min_delta so large that nothing after the first evaluation counts as an improvement
    let cfg = TrainConfig {
        early_stopping: Some(EarlyStopping {
            patience: 2,
            min_delta: 1e9,
        }),
        metric: Metric::Accuracy,
        ..config(100)
    };
    let r = run(dir.path(), &cfg, false, 0);
    assert!(r.early_stopped);
    assert_eq!(
        r.steps, 15,
        "evaluations at 5 (best), 10, 15 (second without improvement)"
    );
    assert_eq!(r.best.unwrap().0, 5);
}

#[test]
fn stop_flag_saves_a_checkpoint_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let vars = SeededVarMap::new(0);
    let net = Net::new(&vars);
    let mut probe = Probe {
        dir: dir.path().to_path_buf(),
        saw_config: false,
        stop_at: Some((7, flag.clone())),
        steps: vec![],
    };
    let opts = RunOptions {
        stop: Some(flag),
        ..RunOptions::new(dir.path())
    };
    let r = trainer::train(
        &net,
        vars.var_map(),
        &blobs(60, 1),
        None,
        &config(50),
        &opts,
        &mut probe,
    )
    .unwrap();
    assert!(r.interrupted);
    assert_eq!(r.steps, 7);
    assert!(dir
        .path()
        .join("checkpoints/step-00000007/optimizer.safetensors")
        .exists());
    // resuming continues from step 7
    let r2 = run(dir.path(), &config(9), true, 0);
    assert_eq!((r2.start_step, r2.steps), (7, 9));
    // old checkpoints are pruned to the newest 3
    let n = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert!(n <= 3);
}

#[test]
fn schedules_have_known_values() {
    let s = Schedule::Step {
        step_size: 10,
        gamma: 0.5,
    };
    assert_eq!(s.lr(1.0, 9, 100), 1.0);
    assert_eq!(s.lr(1.0, 10, 100), 0.5);
    assert_eq!(s.lr(1.0, 25, 100), 0.25);
    let c = Schedule::Cosine { eta_min: 0.1 };
    assert!((c.lr(1.0, 0, 100) - 1.0).abs() < 1e-12);
    assert!((c.lr(1.0, 50, 100) - 0.55).abs() < 1e-12);
    let w = Schedule::WarmupCosine {
        warmup_steps: 4,
        eta_min: 0.0,
    };
    assert_eq!(w.lr(1.0, 0, 14), 0.25);
    assert_eq!(w.lr(1.0, 3, 14), 1.0);
    assert!((w.lr(1.0, 9, 14) - 0.5).abs() < 1e-12);
    assert_eq!(Schedule::Constant.lr(0.3, 77, 100), 0.3);
    let p = Schedule::ReduceOnPlateau {
        factor: 0.5,
        patience: 1,
        threshold: 0.0,
        min_lr: 0.1,
    };
    let mut st = kiln_train::schedule::PlateauState::default();
    for v in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95] {
        st.observe(&p, Metric::Loss, v, 1.0);
    }
    // no improvement after 0.9: decays after 2 bad evaluations each time, floored at 0.1
    assert_eq!(st.scale, 0.125);
    for _ in 0..10 {
        st.observe(&p, Metric::Loss, 0.95, 1.0);
    }
    assert_eq!(st.scale, 0.1);
}

#[test]
fn plain_sgd_run_matches_a_hand_written_loop() {
    // The trainer adds nothing to plain SGD on a deterministic model: compare with a manual loop.
    struct Lin(Linear);
    impl TrainStep for Lin {
        type Batch = (Tensor, Tensor);
        fn loss(&self, (x, y): &Self::Batch, _: &Mode) -> kiln_nn::Result<Tensor> {
            loss::mse(&layers::apply(&self.0, x)?, y)
        }
        fn evaluate(&self, b: &Self::Batch) -> kiln_nn::Result<EvalSums> {
            let l = self.loss(b, &Mode::eval())?.to_scalar::<f32>()? as f64;
            Ok(EvalSums {
                loss_sum: l,
                count: 1,
                correct: None,
            })
        }
    }
    let x = Tensor::arange(0f32, 12., &Device::Cpu)
        .unwrap()
        .reshape((6, 2))
        .unwrap();
    let y = x.sum_keepdim(1).unwrap();
    let data = TensorData::new(x, y).unwrap();
    let cfg = TrainConfig {
        optimizer: OptimizerConfig::Sgd(SgdConfig {
            lr: 0.005,
            momentum: 0.5,
            ..Default::default()
        }),
        batch_size: 4,
        steps: Some(5),
        seed: 2,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let v1 = SeededVarMap::new(5);
    let m1 = Lin(layers::linear(2, 1, v1.var_builder()).unwrap());
    trainer::train(
        &m1,
        v1.var_map(),
        &data,
        None,
        &cfg,
        &RunOptions::new(dir.path()),
        &mut Silent,
    )
    .unwrap();

    let v2 = SeededVarMap::new(5);
    let m2 = Lin(layers::linear(2, 1, v2.var_builder()).unwrap());
    let mut opt = kiln_nn::optim::Optimizer::new(
        cfg.optimizer.clone(),
        kiln_nn::optim::Params::from_var_map(v2.var_map()).unwrap(),
    )
    .unwrap();
    for step in 0..5 {
        let epoch_b = epoch_batches(6, 4, false, true, 2, step / 2);
        let b = data.batch(&epoch_b[step % 2]).unwrap();
        opt.step(&m2.loss(&b, &Mode::eval()).unwrap().backward().unwrap())
            .unwrap();
    }
    assert_eq!(
        m1.0.weight().to_vec2::<f32>().unwrap(),
        m2.0.weight().to_vec2::<f32>().unwrap()
    );
}

#[test]
fn epochs_shuffle_with_the_seed_and_cover_every_example() {
    let a = epoch_batches(10, 3, false, true, 1, 0);
    assert_eq!(a, epoch_batches(10, 3, false, true, 1, 0));
    assert_ne!(a, epoch_batches(10, 3, false, true, 1, 1));
    assert_ne!(a, epoch_batches(10, 3, false, true, 2, 0));
    let mut all: Vec<usize> = a.concat();
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(a.len(), 4);
    assert_eq!(epoch_batches(10, 3, true, true, 1, 0).len(), 3);
    let w = TokenWindows::new(&[0, 1, 2, 3, 4, 5, 6, 7], 3).unwrap();
    assert_eq!(w.len(), 2);
    let (x, y) = w.batch(&[1]).unwrap();
    assert_eq!(x.to_vec2::<u32>().unwrap(), [[3, 4, 5]]);
    assert_eq!(y.to_vec2::<u32>().unwrap(), [[4, 5, 6]]);
    assert!(TokenWindows::new(&[1, 2], 3)
        .unwrap_err()
        .to_string()
        .contains("at least 4 tokens"));
    assert!(data_err().contains("same number of rows"));
}

fn data_err() -> String {
    let x = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    TensorData::new(x, y).unwrap_err().to_string()
}

#[test]
fn bad_configurations_are_clear_errors() {
    let cases: Vec<(TrainConfig, &str)> = vec![
        (
            TrainConfig {
                batch_size: 0,
                ..Default::default()
            },
            "batch_size = 0",
        ),
        (
            TrainConfig {
                epochs: 0,
                ..Default::default()
            },
            "epochs = 0",
        ),
        (
            TrainConfig {
                steps: Some(0),
                ..Default::default()
            },
            "steps = 0",
        ),
        (
            TrainConfig {
                eval_every: Some(0),
                ..Default::default()
            },
            "eval_every = 0",
        ),
        (
            TrainConfig {
                clip_grad_norm: Some(-1.0),
                ..Default::default()
            },
            "clip_grad_norm = -1",
        ),
        (
            TrainConfig {
                schedule: Schedule::Step {
                    step_size: 0,
                    gamma: 0.5,
                },
                ..Default::default()
            },
            "schedule.step_size = 0",
        ),
        (
            TrainConfig {
                schedule: Schedule::ReduceOnPlateau {
                    factor: 1.5,
                    patience: 1,
                    threshold: 0.0,
                    min_lr: 0.0,
                },
                ..Default::default()
            },
            "schedule.factor = 1.5",
        ),
        (
            TrainConfig {
                optimizer: OptimizerConfig::Sgd(SgdConfig {
                    lr: -1.0,
                    ..Default::default()
                }),
                ..Default::default()
            },
            "lr = -1",
        ),
    ];
    for (cfg, want) in cases {
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{e} should name {want}");
    }
    // resuming with a different configuration is refused
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &config(3), false, 0);
    let vars = SeededVarMap::new(0);
    let net = Net::new(&vars);
    let other = TrainConfig {
        batch_size: 4,
        ..config(6)
    };
    let opts = RunOptions {
        resume: true,
        ..RunOptions::new(dir.path())
    };
    let e = trainer::train(
        &net,
        vars.var_map(),
        &blobs(60, 1),
        None,
        &other,
        &opts,
        &mut Silent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("different configuration"), "{e}");
    // resuming where there is nothing is an error naming the file
    let empty = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        resume: true,
        ..RunOptions::new(empty.path())
    };
    let e = trainer::train(
        &net,
        vars.var_map(),
        &blobs(60, 1),
        None,
        &config(3),
        &opts,
        &mut Silent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("config.json"), "{e}");
}

#[test]
fn progress_writes_plain_lines_or_a_bar() {
    let dir = tempfile::tempdir().unwrap();
    let vars = SeededVarMap::new(0);
    let net = Net::new(&vars);
    let mut buf = Vec::new();
    {
        let mut p = Progress::new(&mut buf, false);
        trainer::train(
            &net,
            vars.var_map(),
            &blobs(60, 1),
            Some(&blobs(30, 2)),
            &config(10),
            &RunOptions::new(dir.path()),
            &mut p,
        )
        .unwrap();
    }
    let text = String::from_utf8(buf).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("step 10/10 loss")),
        "{text}"
    );
    assert!(text.contains("samples/s") && text.contains("ETA"), "{text}");
    assert!(text.contains("val_acc"), "{text}");
    assert!(!text.contains('\r'));
    let dir2 = tempfile::tempdir().unwrap();
    let mut buf = Vec::new();
    {
        let mut p = Progress::new(&mut buf, true);
        trainer::train(
            &net,
            vars.var_map(),
            &blobs(60, 1),
            None,
            &config(4),
            &RunOptions::new(dir2.path()),
            &mut p,
        )
        .unwrap();
    }
    let text = String::from_utf8(buf).unwrap();
    assert!(text.contains("\r[") && text.contains("step 4/4"), "{text}");
}

#[test]
fn tables_become_tensor_data() {
    let x = ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
    let names = kiln_core::Dataset::default_feature_names(2);
    let ds = kiln_core::Dataset::classification(
        x.clone(),
        ndarray::array![1.0, 0.0, 2.0],
        names.clone(),
        "t",
        vec!["a".into(), "b".into(), "c".into()],
    )
    .unwrap();
    let d = TensorData::from_dataset(&ds).unwrap();
    assert_eq!(
        d.x().to_vec2::<f32>().unwrap(),
        [[1., 2.], [3., 4.], [5., 6.]]
    );
    assert_eq!(d.y().to_vec1::<u32>().unwrap(), [1, 0, 2]);
    let (bx, by) = d.batch(&[2, 0]).unwrap();
    assert_eq!(
        (bx.to_vec2::<f32>().unwrap(), by.to_vec1::<u32>().unwrap()),
        (vec![vec![5., 6.], vec![1., 2.]], vec![2, 1])
    );
    let ds = kiln_core::Dataset::regression(x, ndarray::array![0.5, 1.5, 2.5], names, "t").unwrap();
    assert_eq!(
        TensorData::from_dataset(&ds)
            .unwrap()
            .y()
            .to_vec1::<f32>()
            .unwrap(),
        [0.5, 1.5, 2.5]
    );
    assert!(d
        .batch(&[3])
        .unwrap_err()
        .to_string()
        .contains("index 3 out of range for 3"));
}
