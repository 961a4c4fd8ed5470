//! `kiln predict`: predictions of a saved model for each row of a table, as CSV.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::data::{self, DataArgs};
use crate::models;

/// Arguments of `kiln predict`.
#[derive(Args)]
pub struct PredictArgs {
    /// Model folder written by `kiln fit --save`, or a run folder written by `kiln train`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Write the predictions here (CSV) instead of stdout.
    #[arg(long, value_name = "FILE.csv")]
    out: Option<PathBuf>,
}

/// Run `kiln predict`.
pub fn run(args: PredictArgs) -> Result<()> {
    let loaded = models::load(&args.model)?;
    // The model's own features are read by name; a target column, if present, is ignored.
    let x = data::load_features(&args.data, &loaded.meta.features)?;
    let pred = loaded.predict(x.view())?;
    let proba = loaded.predict_proba(x.view())?;
    let mut csv = String::from("prediction");
    let classes = loaded.meta.classes.clone();
    if let (Some(_), Some(classes)) = (&proba, &classes) {
        for c in classes {
            csv += &format!(",proba_{c}");
        }
    }
    csv.push('\n');
    for (i, &p) in pred.iter().enumerate() {
        match &classes {
            Some(c) => csv += &c[p as usize],
            None => csv += &p.to_string(),
        }
        if let Some(proba) = &proba {
            for v in proba.row(i) {
                csv += &format!(",{v}");
            }
        }
        csv.push('\n');
    }
    match &args.out {
        Some(path) => {
            kiln_core::folder::write_atomic(path, csv.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} predictions to {}", pred.len(), path.display());
        }
        None => std::io::stdout().write_all(csv.as_bytes())?,
    }
    Ok(())
}
