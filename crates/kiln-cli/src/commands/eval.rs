//! `kiln eval`: metrics of a saved model on labelled data.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::data::{self, DataArgs};
use crate::models;
use crate::output::Metrics;

/// Arguments of `kiln eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Model folder written by `kiln fit --save`, or a run folder written by `kiln train`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Run `kiln eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let loaded = models::load(&args.model)?;
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        println!(
            "kiln eval {} on {}: {} rows",
            args.model.display(),
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
