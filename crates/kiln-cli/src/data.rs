//! Loading tables for any command: `--data FILE` or `--dataset NAME`, with `--target` and
//! `--features`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use kiln_core::{Dataset, Task};
use kiln_data::{builtin, CsvOptions, TaskHint};
use ndarray::{Array1, Array2};

/// Where the data comes from.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// CSV file with a header row.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "dataset",
        required_unless_present = "dataset"
    )]
    pub data: Option<PathBuf>,
    /// Built-in dataset (see `kiln datasets list`).
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<String>,
    /// Target column (default: the last column).
    #[arg(long, value_name = "COL")]
    pub target: Option<String>,
    /// Feature columns, comma-separated (default: every other column).
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    pub features: Option<Vec<String>>,
}

impl DataArgs {
    /// A short name for messages: the file path or `dataset NAME`.
    pub fn describe(&self) -> String {
        match (&self.data, &self.dataset) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(n)) => format!("dataset {n}"),
            (None, None) => "no data".into(),
        }
    }
}

fn hint(task: Task) -> TaskHint {
    match task {
        Task::Regression => TaskHint::Regression,
        Task::Classification => TaskHint::Classification,
    }
}

/// Load a labelled table for `task`.
pub fn load(args: &DataArgs, task: Task, allow_missing: bool) -> Result<Dataset> {
    let opts = CsvOptions {
        target: args.target.clone(),
        features: args.features.clone(),
        task: hint(task),
        allow_missing,
    };
    match (&args.data, &args.dataset) {
        (Some(path), _) => Ok(kiln_data::read_csv(path, &opts)?),
        (None, Some(name)) => {
            let ds = builtin::load(name)?;
            let other_target = args.target.as_ref().is_some_and(|t| *t != ds.target_name);
            if other_target || ds.task() != task {
                // Another column as target, or the target read with another meaning: parse
                // the embedded table with the user's options.
                return Ok(kiln_data::parse_csv(builtin::csv_text(name)?, name, &opts)?);
            }
            match &args.features {
                Some(f) => Ok(ds.select_features(f)?),
                None => Ok(ds),
            }
        }
        (None, None) => bail!("no data: give --data FILE or --dataset NAME"),
    }
}

/// Load only the feature columns a model was fitted with, by name, ignoring any other column.
pub fn load_features(args: &DataArgs, features: &[String]) -> Result<Array2<f64>> {
    match (&args.data, &args.dataset) {
        (Some(path), _) => Ok(kiln_data::read_features(path, features)?),
        (None, Some(name)) => Ok(kiln_data::parse_features(
            builtin::csv_text(name)?,
            name,
            features,
        )?),
        (None, None) => bail!("no data: give --data FILE or --dataset NAME"),
    }
}

/// Re-index the class labels of `data` to the model's `classes` (by name).
pub fn align_classes(data: &mut Dataset, classes: &[String], what: &Path) -> Result<()> {
    let Some(own) = data.classes.clone() else {
        return Ok(());
    };
    let mut y = Array1::zeros(data.y.len());
    for (i, &v) in data.y.iter().enumerate() {
        let name = &own[v as usize];
        let Some(j) = classes.iter().position(|c| c == name) else {
            bail!(
                "{}: row {} has class {name:?}, which the model does not know (its classes: {})",
                what.display(),
                i + 2,
                classes.join(", ")
            );
        };
        y[i] = j as f64;
    }
    data.y = y;
    data.classes = Some(classes.to_vec());
    Ok(())
}
