//! Decision-tree timing for `bench/tree.py` (not a test): fits kiln's trees on the data file
//! the script writes and prints one JSON line per task.
//!
//! ```text
//! cargo run --release -p kiln-classical --example bench_tree -- FILE --threads 1 [--repeat 3]
//! ```
//!
//! With `--repeat R` each fit runs R times and the fastest is reported (noisy machines).
//!
//! FILE holds two blocks (classification, then regression), each: four little-endian u64
//! (n_train, n_test, n_features, n_classes; 0 classes = regression), then f64 arrays x_train
//! (row-major), y_train, x_test, y_test.

use std::time::Instant;

use kiln_classical::tree::{
    DecisionTreeClassifierParams, DecisionTreeRegressorParams, TreeSettings,
};
use kiln_core::{metrics, Dataset, Fit, Predict};
use ndarray::{Array1, Array2};

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u64(&mut self) -> Result<u64, String> {
        let b = self
            .bytes
            .get(self.pos..self.pos + 8)
            .ok_or("data file ends early")?;
        self.pos += 8;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| "bad u64")?))
    }
    fn f64s(&mut self, n: usize) -> Result<Vec<f64>, String> {
        let b = self
            .bytes
            .get(self.pos..self.pos + 8 * n)
            .ok_or("data file ends early")?;
        self.pos += 8 * n;
        Ok(b.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}

/// Peak resident memory of this process in MiB (Linux), if known.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let file = args.first().ok_or("usage: bench_tree FILE [--threads N]")?;
    let threads = match args.iter().position(|a| a == "--threads") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or("--threads needs a number")?,
        None => 1,
    };
    let repeat: usize = match args.iter().position(|a| a == "--repeat") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .filter(|&r| r > 0)
            .ok_or("--repeat needs a positive number")?,
        None => 1,
    };
    let bytes = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let mut r = Reader {
        bytes: &bytes,
        pos: 0,
    };
    for _ in 0..2 {
        let (n, m, d, k) = (
            r.u64()? as usize,
            r.u64()? as usize,
            r.u64()? as usize,
            r.u64()? as usize,
        );
        let x = Array2::from_shape_vec((n, d), r.f64s(n * d)?).map_err(|e| e.to_string())?;
        let y = Array1::from(r.f64s(n)?);
        let xt = Array2::from_shape_vec((m, d), r.f64s(m * d)?).map_err(|e| e.to_string())?;
        let yt = r.f64s(m)?;
        let names = Dataset::default_feature_names(d);
        let settings = TreeSettings {
            threads,
            ..TreeSettings::default()
        };
        let (task, fit_s, predict_s, score, nodes, depth) = if k > 0 {
            let classes = (0..k).map(|c| c.to_string()).collect();
            let data =
                Dataset::classification(x, y, names, "y", classes).map_err(|e| e.to_string())?;
            let params = DecisionTreeClassifierParams {
                tree: settings,
                ..Default::default()
            };
            let mut fit_s = f64::INFINITY;
            let mut fitted = None;
            for _ in 0..repeat {
                drop(fitted.take()); // free the previous model before the next fit
                let t = Instant::now();
                fitted = Some(params.fit(&data).map_err(|e| e.to_string())?);
                fit_s = fit_s.min(t.elapsed().as_secs_f64());
            }
            let model = fitted.ok_or("no fit")?;
            let t = Instant::now();
            let pred = model.predict(xt.view()).map_err(|e| e.to_string())?;
            let predict_s = t.elapsed().as_secs_f64();
            let acc = pred.iter().zip(&yt).filter(|(a, b)| a == b).count() as f64 / m as f64;
            (
                "classification",
                fit_s,
                predict_s,
                acc,
                model.node_count(),
                model.depth(),
            )
        } else {
            let data = Dataset::regression(x, y, names, "y").map_err(|e| e.to_string())?;
            let params = DecisionTreeRegressorParams {
                tree: settings,
                ..Default::default()
            };
            let mut fit_s = f64::INFINITY;
            let mut fitted = None;
            for _ in 0..repeat {
                drop(fitted.take()); // free the previous model before the next fit
                let t = Instant::now();
                fitted = Some(params.fit(&data).map_err(|e| e.to_string())?);
                fit_s = fit_s.min(t.elapsed().as_secs_f64());
            }
            let model = fitted.ok_or("no fit")?;
            let t = Instant::now();
            let pred = model.predict(xt.view()).map_err(|e| e.to_string())?;
            let predict_s = t.elapsed().as_secs_f64();
            let r2 = metrics::r2(&yt, pred.as_slice().ok_or("prediction layout")?);
            (
                "regression",
                fit_s,
                predict_s,
                r2,
                model.node_count(),
                model.depth(),
            )
        };
        println!(
            "{{\"task\":\"{task}\",\"threads\":{threads},\"fit_s\":{fit_s:.4},\"predict_s\":{predict_s:.4},\"score\":{score:.6},\"nodes\":{nodes},\"depth\":{depth},\"peak_rss_mib\":{:.1}}}",
            peak_rss_mib().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
