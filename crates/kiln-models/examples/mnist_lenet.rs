//! Train LeNet-5 on MNIST from the repository's `data/mnist` and report test accuracy.
//!
//! `cargo run --release -p kiln-models --example mnist_lenet -- [epochs] [run_dir]`
//! (defaults: 3 epochs, a temporary run folder). Adam, lr 1e-3, batch 64, seed 0; the test
//! set is evaluated after each epoch (history.jsonl in the run folder).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use kiln_data::idx::{load_mnist, MnistSplit};
use kiln_models::cnn::{LeNet5, LeNetConfig};
use kiln_nn::init::SeededVarMap;
use kiln_nn::optim::{AdamConfig, OptimizerConfig};
use kiln_train::data::TensorData;
use kiln_train::progress::Progress;
use kiln_train::{trainer, RunOptions, TrainConfig};

fn tensors(split: MnistSplit) -> Result<TensorData, Box<dyn std::error::Error>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    let m = load_mnist(dir, split)?;
    let x = Tensor::from_vec(m.images_f32(), (m.len(), 1, m.rows, m.cols), &Device::Cpu)?;
    let y: Vec<u32> = m.labels.iter().map(|&l| l as u32).collect();
    Ok(TensorData::new(
        x,
        Tensor::from_vec(y, m.len(), &Device::Cpu)?,
    )?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    kiln_nn::limit_idle_spinning();
    kiln_nn::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let epochs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let tmp = tempfile::tempdir()?;
    let run_dir = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("run"));
    let (train, test) = (tensors(MnistSplit::Train)?, tensors(MnistSplit::Test)?);
    let vars = SeededVarMap::new(0);
    let net = LeNet5::new(LeNetConfig::default(), vars.var_builder())?;
    let config = TrainConfig {
        model: serde_json::to_value(net.config())?,
        optimizer: OptimizerConfig::Adam(AdamConfig::default()),
        batch_size: 64,
        epochs,
        log_every: 100,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let mut progress = Progress::new(std::io::stderr(), false);
    let report = trainer::train(
        &net,
        vars.var_map(),
        &train,
        Some(&test),
        &config,
        &RunOptions::new(&run_dir),
        &mut progress,
    )?;
    let sums = trainer::evaluate(&net, &test, 256)?;
    println!(
        "{{\"epochs\": {epochs}, \"steps\": {}, \"seconds\": {:.1}, \"test_loss\": {:.4}, \"test_accuracy\": {:.4}}}",
        report.steps,
        t0.elapsed().as_secs_f64(),
        sums.loss(),
        sums.accuracy().unwrap_or(f64::NAN)
    );
    Ok(())
}
