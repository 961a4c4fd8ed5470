//! The CLI's view of every model kind: how to describe it, save it, load it and draw it.
//!
//! A model family joins the CLI with one file here (implementing [`CliModel`] for its fitted
//! types), one `kind => load::<T>` line in [`load`], and one subcommand in `commands/fit.rs`.

pub mod cnn;
pub mod linear;
pub mod mlp;
pub mod svm;
pub mod tree;

use std::path::Path;

use anyhow::{bail, Context, Result};
use kiln_classical::svm::{Svc, Svr};
use kiln_classical::tree::{DecisionTreeClassifier, DecisionTreeRegressor};
use kiln_core::folder::{ModelFolder, ModelMeta};
use kiln_core::{Persist, Predict, Task};
use ndarray::{Array1, Array2, ArrayView2};
use serde_json::Value;

/// What the CLI needs of a fitted model beyond [`Predict`].
pub trait CliModel: Predict {
    /// The `model_info` object of `--json` output (e.g. `intercept`, `coef`).
    fn info(&self, meta: &ModelMeta) -> Value;

    /// Human-readable lines (label, value) describing the fitted model.
    fn summary(&self, meta: &ModelMeta) -> Vec<(String, String)>;

    /// Save into a model folder.
    fn save(&self, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()>;

    /// Warnings about the fit to print on stderr (e.g. an iteration limit was hit).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// A model-specific picture for `--plot` (a tree diagram, decision regions...), or `None`
    /// for the generic one (fitted line or predicted vs actual; confusion matrix).
    fn plot(&self, _path: &Path, _ctx: &PlotContext<'_>) -> Option<Result<()>> {
        None
    }

    /// A text rendering of the fitted model for `kiln show` (a tree's export), if it has one.
    fn show(&self, _format: ShowFormat, _max_depth: Option<usize>) -> Option<String> {
        None
    }

    /// The image a classifier reads (`kiln predict --image`), or `None` if it reads no images.
    fn image_input(&self, _meta: &ModelMeta) -> Option<ImageInput> {
        None
    }
}

/// The images an image classifier takes: rows of `channels × height × width` pixels in
/// (C, H, W) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInput {
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Rows of pixels.
    pub height: usize,
    /// Columns of pixels.
    pub width: usize,
}

/// Formats of `kiln show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowFormat {
    /// Indented text, like scikit-learn's export_text.
    Text,
    /// Graphviz DOT, like scikit-learn's export_graphviz.
    Dot,
}

/// What a model-specific plot may draw on: the training and test rows (already scaled as the
/// model sees them) and the names.
pub struct PlotContext<'a> {
    /// Metadata: feature, target and class names.
    pub meta: &'a ModelMeta,
    /// Test features as the model sees them.
    pub x_test: ArrayView2<'a, f64>,
    /// Test targets.
    pub y_test: &'a [f64],
    /// Deepest tree level to draw (`--max-depth-shown`).
    pub max_depth_shown: Option<usize>,
}

/// Save helper for any [`Persist`] model.
pub fn save_persist<M: Persist>(model: &M, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()> {
    ModelFolder::save(dir, meta, model)
}

/// A model loaded from a folder, with its preprocessing applied before prediction.
pub struct Loaded {
    /// Names and preprocessing.
    pub meta: ModelMeta,
    /// The model.
    pub model: Box<dyn CliModel>,
}

impl Loaded {
    /// Regression or classification.
    pub fn task(&self) -> Task {
        if self.meta.classes.is_some() {
            Task::Classification
        } else {
            Task::Regression
        }
    }

    fn scaled(&self, x: ArrayView2<'_, f64>) -> Result<Option<Array2<f64>>> {
        match &self.meta.preprocessing {
            None => Ok(None),
            Some(s) => Ok(Some(s.transform(x)?)),
        }
    }

    /// Predictions after the stored preprocessing.
    pub fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        kiln_core::check_features(self.model.n_features(), x)?;
        Ok(match self.scaled(x)? {
            Some(s) => self.model.predict(s.view())?,
            None => self.model.predict(x)?,
        })
    }

    /// Probabilities after the stored preprocessing, when the model has them.
    pub fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Result<Option<Array2<f64>>> {
        Ok(match self.scaled(x)? {
            Some(s) => self.model.predict_proba(s.view())?,
            None => self.model.predict_proba(x)?,
        })
    }
}

fn boxed<M: Persist + CliModel + 'static>(dir: &Path) -> Result<Loaded> {
    let (meta, model) = ModelFolder::load::<M>(dir)?;
    if meta.features.len() != model.n_features() {
        bail!(
            "{}: config.json lists {} features but the model was fitted with {}",
            dir.display(),
            meta.features.len(),
            model.n_features()
        );
    }
    Ok(Loaded {
        meta,
        model: Box::new(model),
    })
}

/// A loaded network whose input width must match the folder's feature names.
fn checked<M: CliModel + 'static>(dir: &Path, meta: ModelMeta, model: M) -> Result<Loaded> {
    if meta.features.len() != model.n_features() {
        bail!(
            "{}: config.json lists {} features but the network takes {}",
            dir.display(),
            meta.features.len(),
            model.n_features()
        );
    }
    Ok(Loaded {
        meta,
        model: Box::new(model),
    })
}

/// The model folder of `dir`: `dir` itself, or `dir/model` when `dir` is a training run folder
/// (written by `kiln train`, whose own `config.json` is the training configuration).
pub fn model_dir(dir: &Path) -> std::path::PathBuf {
    let inner = dir.join("model");
    if inner.join("config.json").is_file() && dir.join("history.jsonl").is_file() {
        inner
    } else {
        dir.to_path_buf()
    }
}

/// Load any kiln model folder (or a `kiln train` run folder), dispatching on its `kind`.
pub fn load(dir: &Path) -> Result<Loaded> {
    let dir = &model_dir(dir);
    let config = ModelFolder::read_config(dir)
        .with_context(|| format!("cannot load the model in {}", dir.display()))?;
    let loaded = match config.kind.as_str() {
        k if k == kiln_classical::linear::LinearRegression::KIND => {
            boxed::<kiln_classical::linear::LinearRegression>(dir)
        }
        k if k == kiln_classical::linear::Ridge::KIND => {
            boxed::<kiln_classical::linear::Ridge>(dir)
        }
        k if k == DecisionTreeClassifier::KIND => boxed::<DecisionTreeClassifier>(dir),
        k if k == DecisionTreeRegressor::KIND => boxed::<DecisionTreeRegressor>(dir),
        k if k == Svc::KIND => boxed::<Svc>(dir),
        k if k == Svr::KIND => boxed::<Svr>(dir),
        mlp::KIND => mlp::MlpModel::load(dir).and_then(|(meta, model)| checked(dir, meta, model)),
        cnn::KIND | cnn::LENET_KIND => cnn::ConvModel::load(dir, &config.kind)
            .and_then(|(meta, model)| checked(dir, meta, model)),
        other => bail!(
            "{}: unknown model kind {other:?}; this kiln reads: {}",
            dir.display(),
            known_kinds().join(", ")
        ),
    };
    loaded.with_context(|| format!("cannot load the model in {}", dir.display()))
}

/// Every kind [`load`] understands.
pub fn known_kinds() -> Vec<&'static str> {
    vec![
        kiln_classical::linear::LinearRegression::KIND,
        kiln_classical::linear::Ridge::KIND,
        DecisionTreeClassifier::KIND,
        DecisionTreeRegressor::KIND,
        Svc::KIND,
        Svr::KIND,
        mlp::KIND,
        cnn::KIND,
        cnn::LENET_KIND,
    ]
}

/// Format a float for human output: 6 significant digits, plain.
pub fn num(v: f64) -> String {
    if v == 0.0 || (1e-4..1e6).contains(&v.abs()) {
        let s = format!("{v:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.5e}")
    }
}
