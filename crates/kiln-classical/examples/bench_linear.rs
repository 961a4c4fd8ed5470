//! Time kiln's `LinearRegression` fit on a dataset written by `bench/linear.py`.
//!
//! ```text
//! cargo run --release -p kiln-classical --example bench_linear -- FILE [REPEATS]
//! ```
//!
//! FILE is raw little-endian binary: `u64 n`, `u64 d`, then `x` (`n × d` f64, row-major), then
//! `y` (`n` f64). The fit is timed `REPEATS` times (default 3); one JSON document goes to
//! stdout: the best and all times in seconds, the thread count, the coefficients and the
//! intercept.

use std::time::Instant;

use kiln_classical::linear::LinearRegressionParams;
use kiln_core::{Dataset, Fit};
use ndarray::{Array1, Array2};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: bench_linear FILE [REPEATS]")?;
    let repeats: usize = args.next().map_or(Ok(3), |s| s.parse())?;

    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    let word = |i: usize| -> Result<[u8; 8], String> {
        bytes
            .get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{path}: truncated at word {i}"))
    };
    let n = u64::from_le_bytes(word(0)?) as usize;
    let d = u64::from_le_bytes(word(1)?) as usize;
    if bytes.len() != 8 * (2 + n * d + n) {
        return Err(format!(
            "{path}: {} bytes, expected {} for n = {n}, d = {d}",
            bytes.len(),
            8 * (2 + n * d + n)
        )
        .into());
    }
    let floats: Vec<f64> = bytes[16..]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect();
    drop(bytes);
    let mut floats = floats;
    let y = Array1::from(floats.split_off(n * d));
    let x = Array2::from_shape_vec((n, d), floats)?;
    let data = Dataset::regression(x, y, Dataset::default_feature_names(d), "y")?;

    let params = LinearRegressionParams::default();
    let mut times = Vec::with_capacity(repeats);
    let mut model = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let m = params.fit(&data)?;
        times.push(t.elapsed().as_secs_f64());
        model = Some(m);
    }
    let model = model.ok_or("no fit ran")?;
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let out = serde_json::json!({
        "n_samples": n,
        "n_features": d,
        "threads": rayon::current_num_threads(),
        "fit_seconds": best,
        "fit_seconds_all": times,
        "coef": model.coef.to_vec(),
        "intercept": model.intercept,
        "rank": model.rank,
    });
    println!("{out}");
    Ok(())
}
