//! Times kiln's synthetic generators; `bench/data_generators.sh` compares them with
//! scikit-learn's.
//!
//! `cargo run --release -p kiln-data --example bench_generators -- [n_samples] [n_features]`
//! prints one line per generator: `name seconds` (the best of three runs).

use std::time::Instant;

use kiln_data::synthetic::{
    make_blobs, make_classification, make_regression, BlobsParams, Centers, ClassificationParams,
    RegressionParams, SampleCount,
};

fn best_of_3(mut f: impl FnMut() -> usize) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let rows = f();
        best = best.min(t.elapsed().as_secs_f64());
        assert!(rows > 0);
    }
    best
}

fn main() -> Result<(), kiln_data::Error> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("expected a number, got {a:?}"))
        })
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let f = args.get(1).copied().unwrap_or(50);

    let reg = RegressionParams {
        n_samples: n,
        n_features: f,
        n_informative: 10.min(f),
        noise: 1.0,
        ..Default::default()
    };
    let mut err = None;
    let t = best_of_3(|| match make_regression(&reg, 0) {
        Ok(r) => r.data.n_samples(),
        Err(e) => {
            err = Some(e);
            1
        }
    });
    println!("make_regression {t:.4}");

    let cls = ClassificationParams {
        n_samples: n,
        n_features: f,
        n_informative: 10.min(f),
        n_redundant: 0,
        n_classes: 3,
        ..Default::default()
    };
    let t = best_of_3(|| match make_classification(&cls, 0) {
        Ok(d) => d.n_samples(),
        Err(e) => {
            err = Some(e);
            1
        }
    });
    println!("make_classification {t:.4}");

    let blobs = BlobsParams {
        n_samples: SampleCount::Total(n),
        n_features: f,
        centers: Some(Centers::Count(5)),
        ..Default::default()
    };
    let t = best_of_3(|| match make_blobs(&blobs, 0) {
        Ok(b) => b.data.n_samples(),
        Err(e) => {
            err = Some(e);
            1
        }
    });
    println!("make_blobs {t:.4}");
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
