//! Benchmark helper for `bench/svm.py` (not a test): fit kiln's SVC (rbf, scikit-learn's
//! defaults) on a raw binary training file, score a test file, and print one JSON line with
//! the fit time, accuracy, support-vector count and the process's peak resident memory.
//!
//! File format (little-endian): `n: u64, d: u64`, then `n × d` f64 features (row-major), then
//! `n` f64 labels (0.0 / 1.0 / ...).
//!
//! ```text
//! cargo run --release -p kiln-classical --example bench_svm -- TRAIN.bin TEST.bin THREADS [CACHE_MB]
//! ```

use std::error::Error;
use std::time::Instant;

use kiln_classical::svm::SvcParams;
use kiln_core::{metrics, Dataset, Fit, Predict};
use ndarray::{Array1, Array2};

fn read(path: &str) -> Result<(Array2<f64>, Array1<f64>), Box<dyn Error>> {
    let bytes = std::fs::read(path)?;
    let word = |i: usize| -> Result<[u8; 8], Box<dyn Error>> {
        Ok(bytes
            .get(i * 8..i * 8 + 8)
            .ok_or("file too short")?
            .try_into()?)
    };
    let n = u64::from_le_bytes(word(0)?) as usize;
    let d = u64::from_le_bytes(word(1)?) as usize;
    let vals = (0..n * d + n)
        .map(|i| word(2 + i).map(f64::from_le_bytes))
        .collect::<Result<Vec<f64>, _>>()?;
    let x = Array2::from_shape_vec((n, d), vals[..n * d].to_vec())?;
    let y = Array1::from(vals[n * d..].to_vec());
    Ok((x, y))
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), 0 if unknown.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU seconds used so far by all threads of this process (Linux `/proc/self/stat` utime +
/// stime, in clock ticks of 1/100 s), 0 if unknown.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are fields 14, 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: bench_svm TRAIN.bin TEST.bin THREADS [CACHE_MB]".into());
    }
    let (x, y) = read(&args[1])?;
    let (xt, yt) = read(&args[2])?;
    let threads: usize = args[3].parse()?;
    let k = y.iter().fold(0.0f64, |a, &b| a.max(b)) as usize + 1;
    let classes = (0..k).map(|c| c.to_string()).collect();
    let data = Dataset::classification(
        x,
        y,
        Dataset::default_feature_names(xt.ncols()),
        "y",
        classes,
    )?;
    let mut params = SvcParams::default();
    params.solver.threads = threads;
    if let Some(mb) = args.get(4) {
        params.solver.cache_size = mb.parse()?;
    }
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let model = params.fit(&data)?;
    let fit_s = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - c0;
    let pred = model.predict(xt.view())?;
    let to_usize = |a: &Array1<f64>| a.iter().map(|&v| v as usize).collect::<Vec<_>>();
    let acc = metrics::accuracy(&to_usize(&yt), &to_usize(&pred));
    println!(
        "{{\"fit_s\": {fit_s:.4}, \"cpu_s\": {cpu_s:.2}, \"accuracy\": {acc:.6}, \"n_sv\": {}, \"n_iter\": {}, \"peak_rss\": {}}}",
        model.support().len(),
        model.n_iter().iter().sum::<usize>(),
        peak_rss()
    );
    Ok(())
}
