//! `kiln train mlp`: a multi-layer perceptron on a table.

use kiln_models::mlp::{Mlp, MlpConfig, MlpTask};

use super::*;
use crate::models;

/// Regression or classification, for `--task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TaskName {
    /// Class labels (cross-entropy).
    Classification,
    /// Numbers (mean squared error).
    Regression,
}

#[derive(Args)]
pub(super) struct MlpArgs {
    #[command(flatten)]
    data: DataArgs,
    /// What the target is (default: the built-in dataset's own task; for a CSV, classification,
    /// refused when the target has more than 20 distinct values).
    #[arg(long, value_name = "classification|regression")]
    task: Option<TaskName>,
    #[command(flatten)]
    split: SplitArgs,
    /// Hidden layer sizes, comma-separated.
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        default_value = "64"
    )]
    hidden: Vec<usize>,
    /// Hidden activation: relu, tanh, sigmoid, gelu, silu or identity.
    #[arg(long, value_name = "NAME", default_value = "relu", value_parser = parse_activation)]
    activation: Activation,
    /// Dropout after each hidden activation, in [0, 1).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    dropout: f64,
    #[command(flatten)]
    run: RunArgs,
}

pub(super) fn train_mlp(a: MlpArgs) -> Result<()> {
    let task = match (a.task, &a.data.dataset) {
        (Some(TaskName::Classification), _) => Task::Classification,
        (Some(TaskName::Regression), _) => Task::Regression,
        (None, Some(name)) => kiln_data::builtin::load(name)?.task(),
        (None, None) => Task::Classification,
    };
    let Prepared {
        ds,
        train,
        valid,
        meta,
    } = prepare(&a.data, task, &a.split, a.run.seed)?;
    if a.task.is_none() && a.data.data.is_some() && ds.n_classes() > MAX_GUESSED_CLASSES {
        bail!(
            "{}: the target {:?} has {} distinct values; pass --task regression to predict \
             numbers, or --task classification to treat them as classes",
            a.data.describe(),
            ds.target_name,
            ds.n_classes()
        );
    }
    let mlp_config = MlpConfig {
        input_dim: ds.n_features(),
        hidden: a.hidden.clone(),
        output_dim: match task {
            Task::Classification => ds.n_classes(),
            Task::Regression => 1,
        },
        activation: a.activation,
        dropout: a.dropout,
        task: match task {
            Task::Classification => MlpTask::Classification,
            Task::Regression => MlpTask::Regression,
        },
    };
    mlp_config.validate().context("invalid MLP settings")?;
    let model_record = json!({
        "kind": "mlp",
        "mlp": mlp_config,
        "data": a.data.describe(),
        "target": ds.target_name,
        "test_size": a.split.test_size,
        "stratify": a.split.stratify,
        "scale": !a.split.no_scale,
    });
    let config = a.run.train_config(model_record)?;
    let vars = SeededVarMap::new(a.run.seed);
    let mlp = Mlp::new(mlp_config.clone(), vars.var_builder())?;
    let model_json = serde_json::to_value(&mlp_config)?;
    let classifier = task == Task::Classification;
    run_and_report(
        &mlp,
        &vars,
        &train,
        &valid,
        &config,
        &a.run,
        (models::mlp::KIND, model_json, &meta),
        classifier,
    )
}

/// Without --task, a CSV target with more distinct values than this is refused as classes:
/// it is most likely a number to predict.
const MAX_GUESSED_CLASSES: usize = 20;
