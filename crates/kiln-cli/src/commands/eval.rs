//! `kiln eval`: metrics of a saved model on labelled data.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::data::{self, DataArgs};
use crate::models;
use crate::output::Metrics;

/// `kiln eval`: a saved model on labelled data, or a subcommand.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalCommand {
    #[command(subcommand)]
    what: Option<EvalWhat>,
    #[command(flatten)]
    args: EvalArgs,
}

#[derive(Subcommand)]
enum EvalWhat {
    /// Prompt-fidelity benchmark of a text-to-image model (the judge reads what it draws).
    ImageModel(super::eval_image::EvalImageArgs),
}

/// Run `kiln eval` or its subcommand.
pub fn run_command(cmd: EvalCommand) -> Result<()> {
    match cmd.what {
        Some(EvalWhat::ImageModel(a)) => super::eval_image::run(&a),
        None => run(cmd.args),
    }
}

/// Arguments of `kiln eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Model folder written by `kiln fit --save`, or a run folder written by `kiln train`.
    #[arg(long, value_name = "DIR", required = true)]
    model: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
    /// Draw a PNG: the confusion matrix of a classifier, predicted vs actual for a regressor.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
}

/// Run `kiln eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let model = args
        .model
        .context("kiln eval needs --model DIR (a model or run folder)")?;
    let loaded = models::load(&model)?;
    let mut data_args = args.data.clone();
    if data_args.target.is_none() {
        data_args.target = Some(loaded.meta.target.clone());
    }
    data_args.features = Some(loaded.meta.features.clone());
    let mut ds = data::load(&data_args, loaded.task(), true)?;
    if let Some(classes) = &loaded.meta.classes {
        data::align_classes(
            &mut ds,
            classes,
            std::path::Path::new(&args.data.describe()),
        )?;
    }
    let pred = loaded.predict(ds.x.view())?;
    let metrics = Metrics::compute(
        loaded.task(),
        &ds.y.to_vec(),
        &pred.to_vec(),
        loaded.meta.classes.as_deref(),
    );
    if let Some(path) = &args.plot {
        let rows = ds.n_samples();
        match &metrics {
            Metrics::Classification(m) => confusion_plot(
                path,
                &format!("Confusion matrix on {rows} rows"),
                &m.classes,
                &m.confusion_matrix,
            )?,
            Metrics::Regression(_) => kiln_plot::predicted_vs_actual(
                path,
                &kiln_plot::PredictedVsActual {
                    title: format!("Predicted vs actual {} ({rows} rows)", loaded.meta.target),
                    actual: ds.y.to_vec(),
                    predicted: pred.to_vec(),
                },
            )
            .with_context(|| format!("cannot draw {}", path.display()))?,
        }
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        println!(
            "kiln eval {} on {}: {} rows",
            model.display(),
            args.data.describe(),
            ds.n_samples()
        );
        println!("{}", metrics.line());
        let d = metrics.details();
        if !d.is_empty() {
            println!("\n{d}");
        }
    }
    Ok(())
}

/// Draw a confusion matrix (`matrix[true][predicted]`) into `path`.
pub fn confusion_plot(
    path: &std::path::Path,
    title: &str,
    classes: &[String],
    matrix: &[Vec<usize>],
) -> Result<()> {
    kiln_plot::confusion_matrix(
        path,
        &kiln_plot::ConfusionMatrixPlot {
            title: title.into(),
            classes: classes.to_vec(),
            matrix: matrix.to_vec(),
        },
    )
    .with_context(|| format!("cannot draw {}", path.display()))
}
