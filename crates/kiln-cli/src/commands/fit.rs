//! `kiln fit MODEL`: fit on a table, report train and test metrics, optionally cross-validate,
//! save the model folder and draw the fit.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kiln_classical::linear::{LinearRegressionParams, RidgeParams};
use kiln_classical::svm::{
    scaling_warning, ClassWeight as SvmClassWeight, DecisionShape, Gamma, Kernel, KernelParams,
    SolverParams, SvcParams, SvrParams,
};
use kiln_classical::tree::{
    ClassWeight, DecisionTreeClassifierParams, DecisionTreeRegressorParams, MaxFeatures,
    SampleCount, SplitterKind, TreeSettings,
};
use kiln_core::folder::ModelMeta;
use kiln_core::scale::{Scaled, ScalerKind};
use kiln_core::split::{cross_validate, mean_std, train_test_split};
use kiln_core::{Dataset, Fit, Predict, Task};
use serde_json::{json, Value};

use crate::data::{self, DataArgs};
use crate::models::{num, CliModel, PlotContext};
use crate::output::{print_pairs, Metrics};

/// Arguments of `kiln fit`.
#[derive(Args)]
pub struct FitArgs {
    #[command(subcommand)]
    model: FitModel,
}

#[derive(Subcommand)]
enum FitModel {
    /// Ordinary least squares linear regression (scikit-learn's LinearRegression).
    Linear(LinearArgs),
    /// Ridge regression: least squares with an L2 penalty (scikit-learn's Ridge).
    Ridge(RidgeArgs),
    /// CART decision tree classifier (scikit-learn's DecisionTreeClassifier).
    Tree(TreeArgs),
    /// CART decision tree regressor (scikit-learn's DecisionTreeRegressor).
    TreeRegressor(TreeArgs),
    /// C-support vector classifier with an SMO solver (scikit-learn's SVC).
    Svc(SvcArgs),
    /// Epsilon-support vector regression with an SMO solver (scikit-learn's SVR).
    Svr(SvrArgs),
}

/// Flags every `kiln fit MODEL` takes.
#[derive(Args, Debug, Clone)]
pub struct CommonFit {
    #[command(flatten)]
    pub data: DataArgs,
    /// Separate test table with the same columns; without it, a shuffled split is used.
    #[arg(long, value_name = "FILE")]
    pub test: Option<PathBuf>,
    /// Fraction of the rows held out for testing when --test is not given.
    #[arg(
        long,
        value_name = "F",
        default_value_t = 0.2,
        allow_negative_numbers = true
    )]
    pub test_size: f64,
    /// Seed for the split, the cross-validation folds and any random choice of the model.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Keep the class proportions in the train/test split (classification).
    #[arg(long)]
    pub stratify: bool,
    /// Scale the features first, fitted on the training rows only and saved with the model.
    #[arg(long, value_name = "standard|minmax")]
    pub scale: Option<ScalerKind>,
    /// K-fold cross-validation on the training rows (prints each fold and mean ± std).
    #[arg(long, value_name = "K")]
    pub cv: Option<usize>,
    /// Save the fitted model to this folder (config.json + model.safetensors).
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,
    /// Draw the fit as a PNG (regression: fitted line or predicted vs actual).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
struct LinearArgs {
    #[command(flatten)]
    common: CommonFit,
    /// Fit without an intercept (the line passes through the origin).
    #[arg(long)]
    no_intercept: bool,
    /// Singular values at or below tol × the largest count as zero (minimum-norm solution).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1e-6,
        allow_negative_numbers = true
    )]
    tol: f64,
}

#[derive(Args)]
struct RidgeArgs {
    #[command(flatten)]
    common: CommonFit,
    /// Regularisation strength (>= 0).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    alpha: f64,
    /// Fit without an intercept.
    #[arg(long)]
    no_intercept: bool,
}

#[derive(Args)]
struct TreeArgs {
    #[command(flatten)]
    common: CommonFit,
    /// Split quality: gini, entropy or log_loss (classifier); squared_error, friedman_mse or
    /// absolute_error (regressor). Default: gini / squared_error.
    #[arg(long, value_name = "NAME")]
    criterion: Option<String>,
    /// best: the best split of each feature; random: the best of random thresholds.
    #[arg(long, value_name = "best|random", default_value = "best")]
    splitter: SplitterKind,
    /// Maximum depth (the root is depth 0); unlimited when absent.
    #[arg(long, value_name = "N")]
    max_depth: Option<usize>,
    /// Minimum samples to split a node: a count (>= 2) or a fraction of the rows.
    #[arg(long, value_name = "N|F", default_value = "2")]
    min_samples_split: SampleCount,
    /// Minimum samples in each leaf: a count (>= 1) or a fraction of the rows.
    #[arg(long, value_name = "N|F", default_value = "1")]
    min_samples_leaf: SampleCount,
    /// Minimum fraction of the total sample weight in each leaf, in [0, 0.5].
    #[arg(
        long,
        value_name = "F",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    min_weight_fraction_leaf: f64,
    /// Features examined per split: all, sqrt, log2, a count or a fraction.
    #[arg(long, value_name = "all|sqrt|log2|N|F", default_value = "all")]
    max_features: MaxFeatures,
    /// Grow best-first with at most this many leaves.
    #[arg(long, value_name = "N")]
    max_leaf_nodes: Option<usize>,
    /// A split must decrease the weighted impurity by at least this much.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    min_impurity_decrease: f64,
    /// Class weights (classifier): "balanced" or NAME=W pairs such as "setosa=2,virginica=0.5".
    #[arg(long, value_name = "balanced|NAME=W,...")]
    class_weight: Option<String>,
    /// Minimal cost-complexity pruning strength (>= 0).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    ccp_alpha: f64,
    /// Threads for large nodes (0: all cores); the tree is the same for any value.
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// With --plot: the deepest level drawn (deeper branches are summarised).
    #[arg(long, value_name = "N")]
    max_depth_shown: Option<usize>,
}

impl TreeArgs {
    fn settings(&self) -> TreeSettings {
        TreeSettings {
            splitter: self.splitter,
            max_depth: self.max_depth,
            min_samples_split: self.min_samples_split,
            min_samples_leaf: self.min_samples_leaf,
            min_weight_fraction_leaf: self.min_weight_fraction_leaf,
            max_features: self.max_features,
            max_leaf_nodes: self.max_leaf_nodes,
            min_impurity_decrease: self.min_impurity_decrease,
            ccp_alpha: self.ccp_alpha,
            seed: self.common.seed,
            threads: self.threads,
        }
    }
}

/// Kernel flags shared by `svc` and `svr`.
#[derive(Args)]
struct KernelArgs {
    /// Kernel: linear, rbf, poly or sigmoid.
    #[arg(long, value_name = "NAME", default_value = "rbf")]
    kernel: Kernel,
    /// Regularisation C (> 0).
    #[arg(
        long = "c",
        value_name = "X",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    c: f64,
    /// Kernel coefficient: scale (1 / (n_features · Var(X))), auto (1 / n_features) or a number.
    #[arg(
        long,
        value_name = "scale|auto|X",
        default_value = "scale",
        allow_negative_numbers = true
    )]
    gamma: Gamma,
    /// Degree of the poly kernel.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        allow_negative_numbers = true
    )]
    degree: i32,
    /// Constant term of the poly and sigmoid kernels.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    coef0: f64,
    /// Stopping tolerance on the largest KKT violation.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1e-3,
        allow_negative_numbers = true
    )]
    tol: f64,
    /// Kernel cache size in MB.
    #[arg(
        long,
        value_name = "MB",
        default_value_t = 200.0,
        allow_negative_numbers = true
    )]
    cache_size: f64,
    /// Iteration limit of each binary problem (-1: none); reaching it prints a warning.
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    max_iter: i64,
    /// Turn off the shrinking heuristic.
    #[arg(long)]
    no_shrinking: bool,
    /// Threads computing kernel rows (0: all cores); the model is the same for any value.
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
}

impl KernelArgs {
    fn kernel(&self) -> KernelParams {
        KernelParams {
            kernel: self.kernel,
            gamma: self.gamma,
            degree: self.degree,
            coef0: self.coef0,
        }
    }

    fn solver(&self) -> SolverParams {
        SolverParams {
            tol: self.tol,
            shrinking: !self.no_shrinking,
            cache_size: self.cache_size,
            max_iter: self.max_iter,
            threads: self.threads,
        }
    }
}

#[derive(Args)]
struct SvcArgs {
    #[command(flatten)]
    common: CommonFit,
    #[command(flatten)]
    kernel: KernelArgs,
    /// Class weights multiplying C: "balanced" or NAME=W pairs such as "benign=1,malignant=2".
    #[arg(long, value_name = "balanced|NAME=W,...")]
    class_weight: Option<String>,
    /// Fit Platt-scaled class probabilities by internal 5-fold cross-validation.
    #[arg(long)]
    probability: bool,
    /// With --probability: predict the class of highest probability, so predictions and
    /// probabilities never disagree.
    #[arg(long, requires = "probability")]
    predict_from_proba: bool,
    /// Decision function shape for more than two classes: ovr (one column per class) or ovo.
    #[arg(long, value_name = "ovr|ovo", default_value = "ovr")]
    decision_function_shape: DecisionShape,
}

#[derive(Args)]
struct SvrArgs {
    #[command(flatten)]
    common: CommonFit,
    #[command(flatten)]
    kernel: KernelArgs,
    /// Half-width of the epsilon-insensitive tube (>= 0).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 0.1,
        allow_negative_numbers = true
    )]
    epsilon: f64,
}

/// `balanced` or `name=weight,...` (`name:weight` also accepted): `None` for balanced.
fn parse_class_weight(s: &str) -> Result<Option<std::collections::BTreeMap<String, f64>>> {
    if s == "balanced" {
        return Ok(None);
    }
    let mut map = std::collections::BTreeMap::new();
    for pair in s.split(',') {
        let Some((name, w)) = pair.rsplit_once(['=', ':']) else {
            bail!("--class-weight {s:?}: expected \"balanced\" or NAME=WEIGHT pairs separated by commas, got {pair:?}");
        };
        let w: f64 = w.trim().parse().with_context(|| {
            format!("--class-weight: weight of {name:?} is {w:?}, expected a number")
        })?;
        map.insert(name.trim().to_string(), w);
    }
    Ok(Some(map))
}

/// Run `kiln fit`.
pub fn run(args: FitArgs) -> Result<()> {
    match args.model {
        FitModel::Linear(a) => {
            let params = LinearRegressionParams {
                fit_intercept: !a.no_intercept,
                tol: a.tol,
            };
            fit_and_report(&a.common, Job::new("linear", params, Task::Regression))
        }
        FitModel::Ridge(a) => {
            let params = RidgeParams {
                alpha: a.alpha,
                fit_intercept: !a.no_intercept,
            };
            fit_and_report(&a.common, Job::new("ridge", params, Task::Regression))
        }
        FitModel::Tree(a) => {
            let params = DecisionTreeClassifierParams {
                criterion: a.criterion.as_deref().unwrap_or("gini").parse()?,
                class_weight: match a
                    .class_weight
                    .as_deref()
                    .map(parse_class_weight)
                    .transpose()?
                {
                    None => None,
                    Some(None) => Some(ClassWeight::Balanced),
                    Some(Some(map)) => Some(ClassWeight::Map(map)),
                },
                tree: a.settings(),
            };
            let mut job = Job::new("tree", params, Task::Classification);
            job.max_depth_shown = a.max_depth_shown;
            fit_and_report(&a.common, job)
        }
        FitModel::TreeRegressor(a) => {
            if a.class_weight.is_some() {
                bail!("--class-weight applies to the classifier (kiln fit tree), not to tree-regressor");
            }
            let params = DecisionTreeRegressorParams {
                criterion: a.criterion.as_deref().unwrap_or("squared_error").parse()?,
                tree: a.settings(),
            };
            let mut job = Job::new("tree-regressor", params, Task::Regression);
            job.max_depth_shown = a.max_depth_shown;
            fit_and_report(&a.common, job)
        }
        FitModel::Svc(a) => {
            let params = SvcParams {
                c: a.kernel.c,
                kernel: a.kernel.kernel(),
                solver: a.kernel.solver(),
                class_weight: match a
                    .class_weight
                    .as_deref()
                    .map(parse_class_weight)
                    .transpose()?
                {
                    None => None,
                    Some(None) => Some(SvmClassWeight::Balanced),
                    Some(Some(map)) => Some(SvmClassWeight::Map(map)),
                },
                probability: a.probability,
                predict_from_proba: a.predict_from_proba,
                decision_function_shape: a.decision_function_shape,
                seed: a.common.seed,
                ..SvcParams::default()
            };
            let mut job = Job::new("svc", params, Task::Classification);
            job.warn_unscaled = true;
            fit_and_report(&a.common, job)
        }
        FitModel::Svr(a) => {
            let params = SvrParams {
                c: a.kernel.c,
                epsilon: a.epsilon,
                kernel: a.kernel.kernel(),
                solver: a.kernel.solver(),
            };
            let mut job = Job::new("svr", params, Task::Regression);
            job.warn_unscaled = true;
            fit_and_report(&a.common, job)
        }
    }
}

/// One fit to run: a model name, its hyperparameters and its task.
pub struct Job<F> {
    /// The MODEL word of the command line.
    pub name: &'static str,
    /// Hyperparameters.
    pub params: F,
    /// Regression or classification.
    pub task: Task,
    /// Deepest tree level drawn by `--plot`.
    pub max_depth_shown: Option<usize>,
    /// Warn when the features are on very different scales and `--scale` is not given (SVMs).
    pub warn_unscaled: bool,
}

impl<F: Fit + serde::Serialize> Job<F> {
    /// A job with the default plotting and warning settings.
    pub fn new(name: &'static str, params: F, task: Task) -> Self {
        Job {
            name,
            params,
            task,
            max_depth_shown: None,
            warn_unscaled: false,
        }
    }
}

/// Load, split, (cross-validate), fit, score, report, save and plot.
pub fn fit_and_report<F>(common: &CommonFit, job: Job<F>) -> Result<()>
where
    F: Fit + serde::Serialize,
    F::Model: CliModel,
{
    job.params.validate()?;
    let allow_missing = job.params.allows_nan();
    let data = data::load(&common.data, job.task, allow_missing)?;
    let (train, test) = match &common.test {
        Some(path) => {
            let test_args = DataArgs {
                data: Some(path.clone()),
                dataset: None,
                ..common.data.clone()
            };
            let mut test = data::load(&test_args, job.task, allow_missing)?;
            if test.feature_names != data.feature_names {
                bail!(
                    "{}: the test table's features ({}) differ from the training table's ({})",
                    path.display(),
                    test.feature_names.join(", "),
                    data.feature_names.join(", ")
                );
            }
            if let Some(classes) = &data.classes {
                data::align_classes(&mut test, classes, path)?;
            }
            (data, test)
        }
        None => {
            let labels = data.labels();
            let stratify =
                (common.stratify && job.task == Task::Classification).then_some(labels.as_slice());
            let (tr, te) =
                train_test_split(data.n_samples(), common.test_size, common.seed, stratify)
                    .context("cannot split the data (see --test-size)")?;
            (data.select(&tr), data.select(&te))
        }
    };
    let mut warnings = Vec::new();
    if job.warn_unscaled && common.scale.is_none() {
        warnings.extend(scaling_warning(train.x.view(), &train.feature_names));
    }
    let scaled = Scaled {
        scaler: common.scale,
        inner: job.params,
    };

    let cv = match common.cv {
        None => None,
        Some(k) => {
            let folds = cross_validate(&scaled, &train, k, common.seed)
                .with_context(|| format!("{k}-fold cross-validation"))?;
            Some(folds)
        }
    };

    let t0 = Instant::now();
    let model = scaled.fit(&train)?;
    let fit_seconds = t0.elapsed().as_secs_f64();
    warnings.extend(model.model.warnings());

    let classes = train.classes.clone();
    let train_pred = model.predict(train.x.view())?;
    let test_pred = model.predict(test.x.view())?;
    let train_metrics = Metrics::compute(
        job.task,
        &train.y.to_vec(),
        &train_pred.to_vec(),
        classes.as_deref(),
    );
    let test_metrics = Metrics::compute(
        job.task,
        &test.y.to_vec(),
        &test_pred.to_vec(),
        classes.as_deref(),
    );

    let meta = ModelMeta {
        features: train.feature_names.clone(),
        target: train.target_name.clone(),
        classes: classes.clone(),
        preprocessing: model.scaler.clone(),
    };
    if let Some(dir) = &common.save {
        model
            .model
            .save(dir, &meta)
            .with_context(|| format!("cannot save the model to {}", dir.display()))?;
    }
    if let Some(path) = &common.plot {
        plot_fit(path, &model, &meta, &test, job.max_depth_shown)?;
    }

    let metric_name = match job.task {
        Task::Regression => "r2",
        Task::Classification => "accuracy",
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if common.json {
        let mut out = json!({
            "model": job.name,
            "params": scaled.inner,
            "features": train.feature_names,
            "target": train.target_name,
            "n_train": train.n_samples(),
            "n_test": test.n_samples(),
            "fit_seconds": fit_seconds,
            "train_metrics": train_metrics,
            "test_metrics": test_metrics,
            "model_info": model.model.info(&meta),
            "scale": common.scale,
            "warnings": warnings,
        });
        if let Some(folds) = &cv {
            let (mean, std) = mean_std(folds);
            out["cv"] = json!({
                "metric": metric_name,
                "folds": folds.iter().map(|f| f.score).collect::<Vec<_>>(),
                "mean": mean,
                "std": std,
            });
        }
        if let Some(dir) = &common.save {
            out["saved"] = Value::String(dir.display().to_string());
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }

    println!(
        "kiln fit {} on {}: {} train rows, {} test rows, {} features, target {:?}",
        job.name,
        common.data.describe(),
        train.n_samples(),
        test.n_samples(),
        train.n_features(),
        train.target_name
    );
    if let Some(folds) = &cv {
        for (i, f) in folds.iter().enumerate() {
            println!(
                "cv fold {}: {} train, {} held out, {metric_name} {}",
                i + 1,
                f.n_train,
                f.n_test,
                num(f.score)
            );
        }
        let (mean, std) = mean_std(folds);
        println!("cv {metric_name}: {} ± {}", num(mean), num(std));
    }
    let mut pairs = vec![
        ("fit time".to_string(), seconds(fit_seconds)),
        ("train".to_string(), train_metrics.line()),
        ("test".to_string(), test_metrics.line()),
    ];
    pairs.extend(model.model.summary(&meta));
    print_pairs(&pairs);
    let details = test_metrics.details();
    if !details.is_empty() {
        println!("\ntest set:\n{details}");
    }
    if let Some(dir) = &common.save {
        eprintln!("saved the model to {}", dir.display());
    }
    if let Some(path) = &common.plot {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// A duration for people: milliseconds below a second.
fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

/// `--plot`: the model's own picture if it has one, else the generic one for its task.
fn plot_fit<M: CliModel>(
    path: &std::path::Path,
    model: &kiln_core::scale::ScaledModel<M>,
    meta: &ModelMeta,
    test: &Dataset,
    max_depth_shown: Option<usize>,
) -> Result<()> {
    let x_model = match &model.scaler {
        Some(s) => s.transform(test.x.view())?,
        None => test.x.clone(),
    };
    let ctx = PlotContext {
        meta,
        x_test: x_model.view(),
        y_test: test.y.as_slice().unwrap_or(&[]),
        max_depth_shown,
    };
    if let Some(result) = model.model.plot(path, &ctx) {
        return result.with_context(|| format!("cannot draw {}", path.display()));
    }
    let y: Vec<f64> = test.y.to_vec();
    let pred = model.predict(test.x.view())?.to_vec();
    let result = match (&meta.classes, test.n_features()) {
        (Some(classes), _) => {
            let m = Metrics::compute(Task::Classification, &y, &pred, Some(classes));
            let Metrics::Classification(m) = m else {
                unreachable!("classification metrics for a classifier")
            };
            return super::eval::confusion_plot(
                path,
                &format!("Confusion matrix on {} test rows", y.len()),
                classes,
                &m.confusion_matrix,
            );
        }
        (None, 1) => {
            let x: Vec<f64> = test.x.column(0).to_vec();
            let (lo, hi) = x
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let grid: Vec<f64> = (0..=100)
                .map(|i| lo + (hi - lo) * i as f64 / 100.0)
                .collect();
            let gx = ndarray::Array2::from_shape_vec((grid.len(), 1), grid.clone())?;
            let gy = model.predict(gx.view())?.to_vec();
            kiln_plot::fitted_line(
                path,
                &kiln_plot::FittedLine {
                    title: format!("{} vs {} (test rows)", meta.target, meta.features[0]),
                    x_label: meta.features[0].clone(),
                    y_label: meta.target.clone(),
                    x,
                    y,
                    line_x: grid,
                    line_y: gy,
                },
            )
        }
        (None, _) => kiln_plot::predicted_vs_actual(
            path,
            &kiln_plot::PredictedVsActual {
                title: format!("Predicted vs actual {} (test rows)", meta.target),
                actual: y,
                predicted: pred,
            },
        ),
    };
    result.with_context(|| format!("cannot draw {}", path.display()))
}
