//! `kiln tour`: the guided tour on embedded data. Each chapter runs a classic first example,
//! prints its numbers and adds them, with a picture, to `index.html` in the output folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use kiln_classical::linear::LinearRegressionParams;
use kiln_core::metrics;
use kiln_core::split::train_test_split;
use kiln_core::{Dataset, Fit, Predict};
use ndarray::{Array1, Array2};
use rand::Rng as _;
use rand_distr::StandardNormal;

use crate::models::num;
use crate::output::print_pairs;
use crate::report::{Block, Chapter, Report};

/// Arguments of `kiln tour`.
#[derive(Args)]
pub struct TourArgs {
    /// Folder for the report (index.html) and its pictures.
    #[arg(long, value_name = "DIR", default_value = "kiln-tour")]
    out: PathBuf,
    /// Seed of every random choice in the tour.
    #[arg(long, value_name = "N", default_value_t = 42)]
    seed: u64,
}

/// Run `kiln tour`.
pub fn run(args: TourArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let chapters = vec![linear_chapter(&args.out, args.seed)?];
    let report = Report {
        title: "A tour of kiln".into(),
        chapters,
    };
    report.write(&args.out)?;
    println!("\nreport: {}", args.out.join("index.html").display());
    Ok(())
}

fn heading(title: &str) {
    println!("\n== {title} ==");
}

/// Chapter 1: 100 points with x uniform in [0, 2) and y = 4 + 3x + standard normal noise;
/// an 80/20 split; ordinary least squares.
fn linear_chapter(out: &Path, seed: u64) -> Result<Chapter> {
    let title = "1. Linear regression: y = 4 + 3x + noise";
    heading(title);
    let mut rng = kiln_core::rng(seed);
    let n = 100;
    let x: Vec<f64> = (0..n).map(|_| 2.0 * rng.random::<f64>()).collect();
    let y: Vec<f64> = x
        .iter()
        .map(|&xi| 4.0 + 3.0 * xi + rng.sample::<f64, _>(StandardNormal))
        .collect();
    let data = Dataset::regression(
        Array2::from_shape_vec((n, 1), x)?,
        Array1::from(y),
        vec!["x".into()],
        "y",
    )?;
    let (tr, te) = train_test_split(n, 0.2, seed, None)?;
    let (train, test) = (data.select(&tr), data.select(&te));
    let model = LinearRegressionParams::default().fit(&train)?;
    let pred = model.predict(test.x.view())?;
    let (yt, yp) = (test.y.to_vec(), pred.to_vec());
    let rows = vec![
        ("train / test rows".to_string(), format!("{} / {}", train.n_samples(), test.n_samples())),
        ("intercept (true 4)".to_string(), num(model.intercept)),
        ("coefficient (true 3)".to_string(), num(model.coef[0])),
        ("test MSE".to_string(), num(metrics::mse(&yt, &yp))),
        ("test R²".to_string(), num(metrics::r2(&yt, &yp))),
    ];
    print_pairs(&rows);

    let png = "linear.png";
    let (lo, hi) = (0.0, 2.0);
    let line_x = vec![lo, hi];
    let line_y = vec![model.intercept + model.coef[0] * lo, model.intercept + model.coef[0] * hi];
    kiln_plot::fitted_line(
        &out.join(png),
        &kiln_plot::FittedLine {
            title: "Ordinary least squares on 20 test points".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x: test.x.column(0).to_vec(),
            y: yt,
            line_x,
            line_y,
        },
    )
    .context("cannot draw the linear regression plot")?;
    Ok(Chapter {
        title: title.into(),
        blocks: vec![
            Block::Text(format!(
                "100 points with x uniform in [0, 2) and y = 4 + 3x + standard normal noise \
                 (seed {seed}), split 80/20, fitted by ordinary least squares."
            )),
            Block::Table(rows),
            Block::Image {
                src: png.into(),
                caption: "Test points and the fitted line".into(),
            },
        ],
    })
}
