//! Measure candle's f32 matmul throughput (GFLOP/s) at n×n×n on the CPU, and print one JSON
//! line. Driven by `bench/kernel_speed.py`; shows whether gemm's AVX-512 path is on.
//!
//! `cargo run --release -p kiln-nn --example matmul_gflops -- 1024 10`

use std::time::Instant;

use candle_core::{Device, Tensor};

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let k: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(n);
    let nn: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(n);
    let a = Tensor::randn(0f32, 1., (n, k), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1., (k, nn), &Device::Cpu)?;
    a.matmul(&b)?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        best = best.min(t.elapsed().as_secs_f64());
        drop(c);
    }
    let gflops = 2.0 * (n * k * nn) as f64 / best / 1e9;
    println!("{{\"n\": {n}, \"best_s\": {best:.6}, \"gflops\": {gflops:.1}}}");
    Ok(())
}
