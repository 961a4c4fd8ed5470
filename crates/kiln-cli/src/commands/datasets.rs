//! `kiln datasets`: list and export the built-in datasets, make synthetic ones.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use kiln_data::synthetic::{
    self as synth, BlobsParams, Centers, ClassificationParams, OneOrEach, RegressionParams,
    SampleCount,
};
use kiln_data::{builtin, TaskHint};

/// Arguments of `kiln datasets`.
#[derive(Args)]
pub struct DatasetsArgs {
    #[command(subcommand)]
    command: DatasetsCommand,
}

#[derive(Subcommand)]
enum DatasetsCommand {
    /// Show the built-in datasets: name, rows, features, task.
    List,
    /// Write a built-in dataset to a CSV file.
    Export {
        /// Dataset name (see `kiln datasets list`).
        name: String,
        /// Output CSV file.
        #[arg(long, value_name = "FILE.csv")]
        out: PathBuf,
    },
    /// Generate a synthetic dataset (scikit-learn's make_regression, make_classification,
    /// make_blobs) with a seed.
    Make(MakeArgs),
}

#[derive(Args)]
struct MakeArgs {
    /// Which generator.
    #[arg(value_enum)]
    kind: MakeKind,
    /// Number of rows.
    #[arg(long, value_name = "N", default_value_t = 100)]
    samples: usize,
    /// Number of features.
    #[arg(long, value_name = "D", default_value_t = 2)]
    features: usize,
    /// Informative features (regression default 10, classification default 2), capped at D.
    #[arg(long, value_name = "K")]
    informative: Option<usize>,
    /// Redundant features (classification; default 0 here so that --features 2 works).
    #[arg(long, value_name = "K", default_value_t = 0)]
    redundant: usize,
    /// Number of classes (classification, default 2) or centres (blobs, default 3).
    #[arg(long, value_name = "K")]
    classes: Option<usize>,
    /// Standard deviation of the Gaussian noise added to the target (regression).
    #[arg(long, value_name = "X", default_value_t = 0.0)]
    noise: f64,
    /// Standard deviation of each blob (blobs).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    cluster_std: f64,
    /// Seed of the generator.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Output CSV file.
    #[arg(long, value_name = "FILE.csv")]
    out: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MakeKind {
    Regression,
    Classification,
    Blobs,
}

/// Run `kiln datasets`.
pub fn run(args: DatasetsArgs) -> Result<()> {
    match args.command {
        DatasetsCommand::List => {
            println!(
                "{:<14} {:>5} {:>9}  {:<15} description",
                "name", "rows", "features", "task"
            );
            for d in builtin::list() {
                let task = match d.task {
                    TaskHint::Regression => "regression",
                    TaskHint::Classification => "classification",
                };
                println!(
                    "{:<14} {:>5} {:>9}  {:<15} {}",
                    d.name, d.rows, d.features, task, d.description
                );
            }
            Ok(())
        }
        DatasetsCommand::Export { name, out } => {
            let ds = builtin::load(&name)?;
            kiln_data::write_csv(&out, &ds)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "wrote {} rows of {name} to {}",
                ds.n_samples(),
                out.display()
            );
            Ok(())
        }
        DatasetsCommand::Make(m) => make(m),
    }
}

fn make(m: MakeArgs) -> Result<()> {
    let ds = match m.kind {
        MakeKind::Regression => {
            let p = RegressionParams {
                n_samples: m.samples,
                n_features: m.features,
                n_informative: m.informative.unwrap_or(10).min(m.features),
                noise: m.noise,
                ..Default::default()
            };
            synth::make_regression(&p, m.seed)?.data
        }
        MakeKind::Classification => {
            let p = ClassificationParams {
                n_samples: m.samples,
                n_features: m.features,
                n_informative: m.informative.unwrap_or(2).min(m.features),
                n_redundant: m.redundant,
                n_classes: m.classes.unwrap_or(2),
                ..Default::default()
            };
            synth::make_classification(&p, m.seed)?
        }
        MakeKind::Blobs => {
            let p = BlobsParams {
                n_samples: SampleCount::Total(m.samples),
                n_features: m.features,
                centers: m.classes.map(Centers::Count),
                cluster_std: OneOrEach::One(m.cluster_std),
                ..Default::default()
            };
            synth::make_blobs(&p, m.seed)?.data
        }
    };
    kiln_data::write_csv(&m.out, &ds)
        .with_context(|| format!("cannot write {}", m.out.display()))?;
    eprintln!(
        "wrote {} rows × {} features to {}",
        ds.n_samples(),
        ds.n_features(),
        m.out.display()
    );
    Ok(())
}
