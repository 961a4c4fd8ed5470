//! Time training steps (forward, backward, Adam) on the benchmark shapes with kiln's
//! fused CPU kernels, or with the plain candle compositions they replace (`plain`), and print
//! one JSON line. Driven by `bench/kernel_speed.py`, which runs PyTorch on the same shapes.
//!
//! `cargo run --release -p kiln-nn --example kernels_bench -- lenet 20 [plain]`
//!
//! * `lenet`: LeNet-5 (conv 1→6 5×5 pad 2, ReLU, max-pool 2, conv 6→16 5×5, ReLU, max-pool 2,
//!   400→120→84→10), batch 64 on 1×28×28, cross-entropy — the layers `kiln_models::cnn::LeNet5`
//!   is built from.
//! * `lstm`, `gru`: 2 layers, input 64, hidden 256, sequence 100, batch 32, loss mean(out²).
//! * `attn B H T D`: causal self-attention alone on q, k, v (B, H, T, D), forward and backward
//!   of sum(out ⊙ r), no optimizer (`cargo run ... -- attn 20 fused|plain 12 4 64 32`).

use std::time::Instant;

use candle_core::{Device, Module, Tensor};
use kiln_nn::init::{sample, SeededVarMap};
use kiln_nn::layers::{self, Mode};
use kiln_nn::ops::{self, Pool2d};
use kiln_nn::optim::{AdamConfig, Optimizer, OptimizerConfig, Params};
use kiln_nn::rnn::{Rnn, RnnConfig};
use kiln_nn::{kernels, loss};

fn randn(shape: &[usize], seed: u64) -> kiln_nn::Result<Tensor> {
    Ok(sample(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &shape.into(),
        &mut kiln_core::rng(seed),
    )?)
}

type StepFn = Box<dyn Fn() -> kiln_nn::Result<Tensor>>;

/// Time forward + backward of causal attention on (B, H, T, D) = `dims`.
fn attention(steps: usize, fused: bool, dims: &[usize]) -> kiln_nn::Result<()> {
    let &[b, h, t, d] = dims else {
        return Err(kiln_nn::Error::param(
            "attn sizes",
            format!("{dims:?}"),
            "B H T D",
        ));
    };
    let shape = [b, h, t, d];
    let qkv: Vec<candle_core::Var> = (0..3)
        .map(|s| candle_core::Var::from_tensor(&randn(&shape, s)?).map_err(Into::into))
        .collect::<kiln_nn::Result<_>>()?;
    let r = randn(&shape, 9)?;
    let scale = 1.0 / (d as f64).sqrt();
    let f = if fused {
        kernels::attention::causal_attention
    } else {
        kernels::attention::causal_attention_plain
    };
    let (mut t_fwd, mut t_bwd) = (0f64, 0f64);
    for i in 0..steps + 2 {
        let t0 = Instant::now();
        let y = f(
            qkv[0].as_tensor(),
            qkv[1].as_tensor(),
            qkv[2].as_tensor(),
            scale,
        )?;
        let l = (y * &r)?.sum_all()?;
        let fwd = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let g = l.backward()?;
        std::hint::black_box(g);
        if i >= 2 {
            (t_fwd, t_bwd) = (t_fwd + fwd, t_bwd + t0.elapsed().as_secs_f64());
        }
    }
    let ms = |s: f64| 1000.0 * s / steps as f64;
    println!(
        "{{\"model\": \"attn\", \"fused\": {fused}, \"dims\": {dims:?}, \"threads\": {}, \
         \"ms_per_step\": {:.3}, \"forward_ms\": {:.3}, \"backward_ms\": {:.3}}}",
        candle_core::utils::get_num_threads(),
        ms(t_fwd + t_bwd),
        ms(t_fwd),
        ms(t_bwd)
    );
    Ok(())
}

fn main() -> kiln_nn::Result<()> {
    kiln_nn::limit_idle_spinning();
    kiln_nn::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).map(String::as_str).unwrap_or("lenet");
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let fused = args.get(3).map(String::as_str) != Some("plain");
    if model == "attn" {
        let dims: Vec<usize> = args
            .get(4..)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        return attention(steps, fused, &dims);
    }
    let vars = SeededVarMap::new(0);
    let vb = vars.var_builder();
    let step_fn: StepFn = match model {
        "lenet" => {
            let mut c1 = layers::conv2d(1, 6, 5, 1, 2, vb.pp("conv1"))?;
            let mut c2 = layers::conv2d(6, 16, 5, 1, 0, vb.pp("conv2"))?;
            c1.set_fused(fused);
            c2.set_fused(fused);
            let fc1 = layers::linear(400, 120, vb.pp("fc1"))?;
            let fc2 = layers::linear(120, 84, vb.pp("fc2"))?;
            let fc3 = layers::linear(84, 10, vb.pp("fc3"))?;
            let x = randn(&[64, 1, 28, 28], 1)?;
            let y = Tensor::from_vec((0..64u32).map(|i| i % 10).collect(), 64, &Device::Cpu)?;
            let pool = Pool2d::square(2, 2, 0);
            Box::new(move || {
                let relu = |t: Tensor| if fused { ops::relu(&t) } else { Ok(t.relu()?) };
                let h = ops::max_pool2d(&relu(c1.forward(&x)?)?, pool)?; // (B, 6, 14, 14)
                let h = ops::max_pool2d(&relu(c2.forward(&h)?)?, pool)?; // (B, 16, 5, 5)
                let h = relu(fc1.forward(&h.flatten_from(1)?)?)?;
                let logits = fc3.forward(&relu(fc2.forward(&h)?)?)?; // (B, 10)
                if fused {
                    kernels::loss::cross_entropy(&logits, &y)
                } else {
                    loss::cross_entropy_plain(&logits, &y)
                }
            })
        }
        "lstm" | "gru" => {
            let cfg = RnnConfig {
                num_layers: 2,
                batch_first: true,
                ..RnnConfig::new(64, 256)
            };
            let mut rnn = if model == "lstm" {
                Rnn::lstm(cfg, vb)?
            } else {
                Rnn::gru(cfg, vb)?
            };
            rnn.set_fused(fused);
            let x = randn(&[32, 100, 64], 1)?;
            Box::new(move || {
                let (out, _) = rnn.forward(&x, None, &Mode::train(0))?;
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
    let (mut t_fwd, mut t_bwd, mut t_opt) = (0f64, 0f64, 0f64);
    let mut run = |n: usize, record: bool| -> kiln_nn::Result<f64> {
        let t0 = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            let l = step_fn()?;
            let fwd = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let g = l.backward()?;
            let bwd = t.elapsed().as_secs_f64();
            let t = Instant::now();
            opt.step(&g)?;
            if record {
                (t_fwd, t_bwd, t_opt) =
                    (t_fwd + fwd, t_bwd + bwd, t_opt + t.elapsed().as_secs_f64());
            }
        }
        Ok(t0.elapsed().as_secs_f64())
    };
    run(2, false)?; // warm-up
    let secs = run(steps, true)?;
    let ms = |s: f64| 1000.0 * s / steps as f64;
    println!(
        "{{\"model\": \"{model}\", \"fused\": {fused}, \"threads\": {}, \"steps\": {steps}, \
         \"ms_per_step\": {:.3}, \"forward_ms\": {:.3}, \"backward_ms\": {:.3}, \"adam_ms\": {:.3}}}",
        candle_core::utils::get_num_threads(),
        ms(secs),
        ms(t_fwd),
        ms(t_bwd),
        ms(t_opt)
    );
    Ok(())
}
