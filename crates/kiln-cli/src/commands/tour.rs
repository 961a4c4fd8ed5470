//! `kiln tour`: the guided tour on embedded data. Each chapter runs a classic first example,
//! prints its numbers and adds them, with a picture, to `index.html` in the output folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use kiln_classical::linear::LinearRegressionParams;
use kiln_classical::svm::SvcParams;
use kiln_classical::tree::{DecisionTreeClassifierParams, TextOptions};
use kiln_core::folder::ModelMeta;
use kiln_core::metrics;
use kiln_core::metrics::ClassificationMetrics;
use kiln_core::scale::{Scaled, ScalerKind};
use kiln_core::split::train_test_split;
use kiln_core::{Dataset, Fit, Predict};
use ndarray::{Array1, Array2};
use rand::Rng as _;
use rand_distr::StandardNormal;

use crate::models::{num, CliModel, PlotContext};
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
    let chapters = vec![
        linear_chapter(&args.out, args.seed)?,
        tree_chapter(&args.out, args.seed)?,
        svm_chapter(&args.out, args.seed)?,
        super::tour_dl::cnn_chapter(&args.out, args.seed)?,
        super::tour_dl::gru_chapter(&args.out, args.seed)?,
        super::tour_gpt::gpt_chapter(6, args.seed)?,
        super::tour_image::image_chapter(7, &args.out, args.seed)?,
    ];
    let report = Report {
        title: "A tour of kiln".into(),
        chapters,
    };
    report.write(&args.out)?;
    println!("\nreport: {}", args.out.join("index.html").display());
    Ok(())
}

pub(super) fn heading(title: &str) {
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
        (
            "train / test rows".to_string(),
            format!("{} / {}", train.n_samples(), test.n_samples()),
        ),
        ("intercept (true 4)".to_string(), num(model.intercept)),
        ("coefficient (true 3)".to_string(), num(model.coef[0])),
        ("test MSE".to_string(), num(metrics::mse(&yt, &yp))),
        ("test R²".to_string(), num(metrics::r2(&yt, &yp))),
    ];
    print_pairs(&rows);

    let png = "linear.png";
    let (lo, hi) = (0.0, 2.0);
    let line_x = vec![lo, hi];
    let line_y = vec![
        model.intercept + model.coef[0] * lo,
        model.intercept + model.coef[0] * hi,
    ];
    kiln_plot::fitted_line(
        out.join(png),
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

/// Chapter 2: a decision tree on iris with an 80/20 split: accuracy, the text export and the
/// tree diagram.
fn tree_chapter(out: &Path, seed: u64) -> Result<Chapter> {
    let title = "2. A decision tree on iris";
    heading(title);
    let data = kiln_data::builtin::load("iris")?;
    let (tr, te) = train_test_split(data.n_samples(), 0.2, seed, None)?;
    let (train, test) = (data.select(&tr), data.select(&te));
    let model = DecisionTreeClassifierParams::default().fit(&train)?;
    let pred: Vec<usize> = model
        .predict(test.x.view())?
        .iter()
        .map(|&p| p as usize)
        .collect();
    let classes = data.classes.clone().unwrap_or_default();
    let m = ClassificationMetrics::compute(&test.labels(), &pred, &classes);
    let rows = vec![
        (
            "train / test rows".to_string(),
            format!("{} / {}", train.n_samples(), test.n_samples()),
        ),
        (
            "tree".to_string(),
            format!(
                "{} nodes, depth {}, {} leaves",
                model.node_count(),
                model.depth(),
                model.n_leaves()
            ),
        ),
        ("test accuracy".to_string(), format!("{:.4}", m.accuracy)),
    ];
    print_pairs(&rows);
    let text = model.export_text(&TextOptions::default());
    println!("{text}");

    let png = "tree.png";
    let nodes = model
        .diagram(Some(5))
        .into_iter()
        .map(|b| kiln_plot::DiagramNode {
            lines: b.lines,
            children: b.children,
            color_class: b.color_class,
            purity: b.purity,
        })
        .collect();
    kiln_plot::tree_diagram(
        out.join(png),
        &kiln_plot::TreeDiagram {
            nodes,
            n_colors: classes.len(),
            title: format!(
                "Decision tree on iris ({} training rows)",
                train.n_samples()
            ),
        },
    )
    .context("cannot draw the tree diagram")?;
    Ok(Chapter {
        title: title.into(),
        blocks: vec![
            Block::Text(format!(
                "Fisher's iris (150 flowers, 4 measurements, 3 species), split 80/20 with seed {seed}; \
                 a CART tree grown with the Gini criterion until its leaves are pure."
            )),
            Block::Table(rows),
            Block::Pre(text),
            Block::Pre(m.report()),
            Block::Image {
                src: png.into(),
                caption: "The fitted tree: each box shows its split, impurity, samples and class counts".into(),
            },
        ],
    })
}

/// Chapter 3: an RBF support vector classifier on standardised iris: accuracy and the
/// classification report on all four features, then the decision regions on two of them.
fn svm_chapter(out: &Path, seed: u64) -> Result<Chapter> {
    let title = "3. A support vector machine on iris";
    heading(title);
    let data = kiln_data::builtin::load("iris")?;
    let classes = data.classes.clone().unwrap_or_default();
    let (tr, te) = train_test_split(data.n_samples(), 0.2, seed, Some(&data.labels()))?;
    let (train, test) = (data.select(&tr), data.select(&te));
    let params = Scaled {
        scaler: Some(ScalerKind::Standard),
        inner: SvcParams::default(),
    };
    let model = params.fit(&train)?;
    let pred: Vec<usize> = model
        .predict(test.x.view())?
        .iter()
        .map(|&p| p as usize)
        .collect();
    let m = ClassificationMetrics::compute(&test.labels(), &pred, &classes);
    let rows = vec![
        (
            "train / test rows".to_string(),
            format!("{} / {} (stratified)", train.n_samples(), test.n_samples()),
        ),
        (
            "support vectors".to_string(),
            model.model.support().len().to_string(),
        ),
        ("test accuracy".to_string(), format!("{:.4}", m.accuracy)),
    ];
    print_pairs(&rows);
    let report = m.report();
    println!("{report}");

    // The same model on two features, to draw its regions.
    let pair = [
        "petal length (cm)".to_string(),
        "petal width (cm)".to_string(),
    ];
    let (train2, test2) = (train.select_features(&pair)?, test.select_features(&pair)?);
    let model2 = params.fit(&train2)?;
    let scaler = model2.scaler.clone();
    let x_test = match &scaler {
        Some(s) => s.transform(test2.x.view())?,
        None => test2.x.clone(),
    };
    let meta = ModelMeta {
        features: pair.to_vec(),
        target: data.target_name.clone(),
        classes: Some(classes.clone()),
        preprocessing: scaler,
    };
    let png = "svm.png";
    let ctx = PlotContext {
        meta: &meta,
        x_test: x_test.view(),
        y_test: test2.y.as_slice().unwrap_or(&[]),
        max_depth_shown: None,
    };
    if let Some(r) = model2.model.plot(&out.join(png), &ctx) {
        r.context("cannot draw the SVM decision regions")?;
    }
    Ok(Chapter {
        title: title.into(),
        blocks: vec![
            Block::Text(format!(
                "An RBF-kernel SVC (C = 1, gamma = scale) on standardised iris features, with a \
                 stratified 80/20 split (seed {seed}); the picture refits it on petal length and \
                 width alone to show its decision regions."
            )),
            Block::Table(rows),
            Block::Pre(report),
            Block::Image {
                src: png.into(),
                caption: "Decision regions on two standardised features; support vectors circled"
                    .into(),
            },
        ],
    })
}
