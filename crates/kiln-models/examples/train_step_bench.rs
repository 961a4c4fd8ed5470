//! Time training steps (forward, backward, Adam update) of LeNet-5 (batch 64, 1×28×28) or a
//! 2-layer LSTM/GRU (input 64, hidden 256, sequence 100, batch 32) on random data, and print
//! one JSON line. Driven by `bench/dl_train_step.py`, which runs PyTorch on the same shapes.
//!
//! `cargo run --release -p kiln-models --example train_step_bench -- lenet 20`

use std::time::Instant;

use candle_core::{Device, Tensor};
use kiln_models::cnn::{LeNet5, LeNetConfig};
use kiln_nn::init::{sample, SeededVarMap};
use kiln_nn::optim::{AdamConfig, Optimizer, OptimizerConfig, Params};
use kiln_nn::rnn::{Rnn, RnnConfig};
use kiln_nn::{Mode, TrainStep};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    sample(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &shape.into(),
        &mut kiln_core::rng(seed),
    )
    .expect("random tensor")
}

/// One training step's loss in the given mode.
type StepFn = Box<dyn Fn(&Mode) -> kiln_nn::Result<Tensor>>;

fn main() -> kiln_nn::Result<()> {
    kiln_nn::limit_idle_spinning();
    kiln_nn::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).map(String::as_str).unwrap_or("lenet");
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let vars = SeededVarMap::new(0);
    let vb = vars.var_builder();
    let step_fn: StepFn = match model {
        "lenet" => {
            let net = LeNet5::new(LeNetConfig::default(), vb)?;
            let x = randn(&[64, 1, 28, 28], 1);
            let y = Tensor::from_vec(
                (0..64u32).map(|i| i % 10).collect::<Vec<_>>(),
                64,
                &Device::Cpu,
            )?;
            Box::new(move |m| net.loss(&(x.clone(), y.clone()), m))
        }
        "lstm" | "gru" => {
            let cfg = RnnConfig {
                num_layers: 2,
                batch_first: true,
                ..RnnConfig::new(64, 256)
            };
            let rnn = if model == "lstm" {
                Rnn::lstm(cfg, vb)?
            } else {
                Rnn::gru(cfg, vb)?
            };
            let x = randn(&[32, 100, 64], 1);
            Box::new(move |m| {
                let (out, _) = rnn.forward(&x, None, m)?;
                Ok(out.sqr()?.mean_all()?)
            })
        }
        other => {
            return Err(kiln_nn::Error::param("model", other, "lenet, lstm or gru"));
        }
    };
    let mut opt = Optimizer::new(
        OptimizerConfig::Adam(AdamConfig::default()),
        Params::from_var_map(vars.var_map())?,
    )?;
    let (mut t_fwd, mut t_bwd) = (0f64, 0f64);
    let mut run = |n: usize| -> kiln_nn::Result<f64> {
        let t0 = Instant::now();
        for s in 0..n {
            let t = Instant::now();
            let l = step_fn(&Mode::train(s as u64))?;
            t_fwd += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let g = l.backward()?;
            t_bwd += t.elapsed().as_secs_f64();
            opt.step(&g)?;
        }
        Ok(t0.elapsed().as_secs_f64())
    };
    run(2)?; // warm-up
    let secs = run(steps)?;
    eprintln!(
        "forward {:.1} ms/step, backward {:.1} ms/step (incl. warm-up)",
        1000.0 * t_fwd / (steps + 2) as f64,
        1000.0 * t_bwd / (steps + 2) as f64
    );
    println!(
        "{{\"model\": \"{model}\", \"steps\": {steps}, \"ms_per_step\": {:.3}}}",
        1000.0 * secs / steps as f64
    );
    Ok(())
}
