//! `kiln show`: print or draw a saved model (a tree as text, DOT or a diagram).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ndarray::Array2;

use crate::models::{self, PlotContext, ShowFormat};
use crate::output::print_pairs;

/// Arguments of `kiln show`.
#[derive(Args)]
pub struct ShowArgs {
    /// Model folder written by `kiln fit --save`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Text layout of the model (trees: text like export_text, dot like export_graphviz).
    #[arg(long, value_enum, default_value = "text")]
    format: ShowFormat,
    /// Draw the model as a PNG instead of printing it (trees: the tree diagram).
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// The deepest level printed or drawn.
    #[arg(long, value_name = "N")]
    max_depth_shown: Option<usize>,
}

/// Run `kiln show`.
pub fn run(args: ShowArgs) -> Result<()> {
    let loaded = models::load(&args.model)?;
    if let Some(path) = &args.plot {
        let empty = Array2::<f64>::zeros((0, loaded.meta.features.len()));
        let ctx = PlotContext {
            meta: &loaded.meta,
            x_test: empty.view(),
            y_test: &[],
            max_depth_shown: args.max_depth_shown,
        };
        match loaded.model.plot(path, &ctx) {
            Some(r) => r.with_context(|| format!("cannot draw {}", path.display()))?,
            None => {
                bail!("this kind of model has no diagram; `kiln show` without --plot prints it")
            }
        }
        eprintln!("wrote {}", path.display());
        return Ok(());
    }
    match loaded.model.show(args.format, args.max_depth_shown) {
        Some(text) => print!("{text}"),
        None => print_pairs(&loaded.model.summary(&loaded.meta)),
    }
    Ok(())
}
