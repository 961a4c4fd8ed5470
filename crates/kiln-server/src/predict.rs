//! Predictions from classical models (linear, ridge, trees, SVMs) and tabular or image networks
//! (MLP, conv stack, LeNet-5) saved as kiln model folders.
//!
//! The CLI reads the same folders in `kiln-cli/src/models/`; that code also saves, describes
//! and plots models, so the server keeps its own small loader here (only what predicting needs).

use std::path::Path;

use candle_core::{Device, Tensor};
use kiln_classical::linear::{LinearRegression, Ridge};
use kiln_classical::svm::{Svc, Svr};
use kiln_classical::tree::{DecisionTreeClassifier, DecisionTreeRegressor};
use kiln_core::folder::{FolderConfig, ModelFolder, ModelMeta};
use kiln_core::scale::Scaler;
use kiln_core::{Persist, Predict};
use kiln_models::cnn::{ConvStack, ConvStackConfig, LeNet5, LeNetConfig};
use kiln_models::mlp::{Mlp, MlpConfig, MlpTask};
use kiln_nn::Mode;
use ndarray::{Array1, Array2, ArrayView2};

use crate::error::{LoadError, ModelError};

/// What a predictor takes as input.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InputKind {
    /// Rows of numbers, one per feature.
    Table,
    /// Images flattened in (C, H, W) order.
    Image {
        /// Channels (1: grey, 3: RGB).
        channels: usize,
        /// Height in pixels.
        height: usize,
        /// Width in pixels.
        width: usize,
    },
}

/// What a client may ask of a predictor.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PredictorInfo {
    /// The folder's kind (`decision_tree_classifier`, `mlp`, ...).
    pub kind: String,
    /// Feature names in column order.
    pub features: Vec<String>,
    /// The target's name.
    pub target: String,
    /// Class names of a classifier.
    pub classes: Option<Vec<String>>,
    /// Table rows or images.
    pub input: InputKind,
}

/// Predictions for a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Values (regression) or class indices (classification), one per row.
    pub values: Array1<f64>,
    /// Class probabilities (rows × classes) when the model has them.
    pub probabilities: Option<Array2<f64>>,
}

/// A model that predicts from rows of features.
pub trait Predictor: Send + Sync {
    /// Names, classes and input kind.
    fn info(&self) -> &PredictorInfo;

    /// Predict each row of `x` (rows × features, in [`PredictorInfo::features`] order).
    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Prediction, ModelError>;
}

/// A model folder's predictor: the stored preprocessing, then the model.
pub struct FolderPredictor {
    info: PredictorInfo,
    scaler: Option<Scaler>,
    model: Box<dyn Predict + Send + Sync>,
}

fn input_err(e: kiln_core::Error) -> ModelError {
    match e {
        kiln_core::Error::Numerical(m) => ModelError::Internal(m),
        other => ModelError::input("rows", other.to_string()),
    }
}

impl Predictor for FolderPredictor {
    fn info(&self) -> &PredictorInfo {
        &self.info
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Prediction, ModelError> {
        kiln_core::check_features(self.model.n_features(), x).map_err(input_err)?;
        let scaled = match &self.scaler {
            Some(s) => Some(s.transform(x).map_err(input_err)?),
            None => None,
        };
        let run = |x: ArrayView2<'_, f64>| -> Result<Prediction, ModelError> {
            Ok(Prediction {
                values: self.model.predict(x).map_err(input_err)?,
                probabilities: self.model.predict_proba(x).map_err(input_err)?,
            })
        };
        match &scaled {
            Some(s) => run(s.view()),
            None => run(x),
        }
    }
}

/// The kinds [`load`] reads.
pub fn known_kinds() -> Vec<&'static str> {
    vec![
        LinearRegression::KIND,
        Ridge::KIND,
        DecisionTreeClassifier::KIND,
        DecisionTreeRegressor::KIND,
        Svc::KIND,
        Svr::KIND,
        MLP_KIND,
        CONV_STACK_KIND,
        LENET_KIND,
    ]
}

/// The `kind` of an MLP folder (`kiln train mlp`).
pub const MLP_KIND: &str = "mlp";
/// The `kind` of a conv-stack folder (`kiln train cnn`).
pub const CONV_STACK_KIND: &str = "conv_stack";
/// The `kind` of a LeNet-5 folder (`kiln train cnn --arch lenet5`).
pub const LENET_KIND: &str = "lenet5";

/// Whether [`load`] reads folders of `kind`.
pub fn is_predictor_kind(kind: &str) -> bool {
    known_kinds().contains(&kind)
}

fn classical<M: Persist + Predict + Send + Sync + 'static>(
    dir: &Path,
) -> Result<(ModelMeta, Box<dyn Predict + Send + Sync>), LoadError> {
    let (meta, model) = ModelFolder::load::<M>(dir)?;
    Ok((meta, Box::new(model)))
}

/// Load the predictor in model folder `dir` whose `config.json` is `config`.
pub fn load(dir: &Path, config: &FolderConfig) -> Result<FolderPredictor, LoadError> {
    let kind = config.kind.as_str();
    let (meta, model) = match kind {
        k if k == LinearRegression::KIND => classical::<LinearRegression>(dir)?,
        k if k == Ridge::KIND => classical::<Ridge>(dir)?,
        k if k == DecisionTreeClassifier::KIND => classical::<DecisionTreeClassifier>(dir)?,
        k if k == DecisionTreeRegressor::KIND => classical::<DecisionTreeRegressor>(dir)?,
        k if k == Svc::KIND => classical::<Svc>(dir)?,
        k if k == Svr::KIND => classical::<Svr>(dir)?,
        MLP_KIND | CONV_STACK_KIND | LENET_KIND => {
            let net = NetModel::load(dir, kind)?;
            (
                config.meta.clone(),
                Box::new(net) as Box<dyn Predict + Send + Sync>,
            )
        }
        other => {
            return Err(LoadError::UnknownKind {
                path: dir.display().to_string(),
                kind: other.to_string(),
                known: known_kinds().join(", "),
            })
        }
    };
    if meta.features.len() != model.n_features() {
        return Err(LoadError::Model {
            path: dir.display().to_string(),
            message: format!(
                "config.json lists {} features but the model takes {}",
                meta.features.len(),
                model.n_features()
            ),
        });
    }
    let input = match net_image_shape(kind, &config.model) {
        Some((channels, height, width)) => InputKind::Image {
            channels,
            height,
            width,
        },
        None => InputKind::Table,
    };
    Ok(FolderPredictor {
        info: PredictorInfo {
            kind: kind.to_string(),
            features: meta.features.clone(),
            target: meta.target.clone(),
            classes: meta.classes.clone(),
            input,
        },
        scaler: meta.preprocessing,
        model,
    })
}

fn net_image_shape(kind: &str, model: &serde_json::Value) -> Option<(usize, usize, usize)> {
    match kind {
        CONV_STACK_KIND => {
            let c: ConvStackConfig = serde_json::from_value(model.clone()).ok()?;
            Some((c.in_channels, c.image_size.0, c.image_size.1))
        }
        LENET_KIND => {
            let c: LeNetConfig = serde_json::from_value(model.clone()).ok()?;
            Some((c.in_channels, c.image_size, c.image_size))
        }
        _ => None,
    }
}

type Forward = Box<dyn Fn(&Tensor) -> kiln_nn::Result<Tensor> + Send + Sync>;

/// A network as a [`Predict`]: its forward pass, input shape and output width.
struct NetModel {
    forward: Forward,
    /// Input shape of one row: (features) or (C, H, W).
    row_shape: Vec<usize>,
    outputs: usize,
    classify: bool,
}

impl NetModel {
    fn load(dir: &Path, kind: &str) -> Result<Self, LoadError> {
        let bad = |m: String| LoadError::Model {
            path: dir.display().to_string(),
            message: m,
        };
        let (config, vb) = kiln_models::folder::load(dir, kind).map_err(|e| bad(e.to_string()))?;
        let json = |e: serde_json::Error| bad(format!("config.json \"model\": {e}"));
        let built = |e: kiln_nn::Error| bad(e.to_string());
        Ok(match kind {
            MLP_KIND => {
                let c: MlpConfig = serde_json::from_value(config.model).map_err(json)?;
                let (i, o, classify) =
                    (c.input_dim, c.output_dim, c.task == MlpTask::Classification);
                let net = Mlp::new(c, vb).map_err(built)?;
                Self {
                    forward: Box::new(move |x| net.forward(x, &Mode::eval())),
                    row_shape: vec![i],
                    outputs: o,
                    classify,
                }
            }
            CONV_STACK_KIND => {
                let c: ConvStackConfig = serde_json::from_value(config.model).map_err(json)?;
                let shape = vec![c.in_channels, c.image_size.0, c.image_size.1];
                let k = c.num_classes;
                let net = ConvStack::new(c, vb).map_err(built)?;
                Self {
                    forward: Box::new(move |x| net.forward(x, &Mode::eval())),
                    row_shape: shape,
                    outputs: k,
                    classify: true,
                }
            }
            _ => {
                let c: LeNetConfig = serde_json::from_value(config.model).map_err(json)?;
                let shape = vec![c.in_channels, c.image_size, c.image_size];
                let k = c.num_classes;
                let net = LeNet5::new(c, vb).map_err(built)?;
                Self {
                    forward: Box::new(move |x| net.forward(x, &Mode::eval())),
                    row_shape: shape,
                    outputs: k,
                    classify: true,
                }
            }
        })
    }

    /// Network outputs (N, O): logits or values.
    fn outputs(&self, x: ArrayView2<'_, f64>) -> kiln_core::Result<Array2<f64>> {
        kiln_core::check_features(self.n_features(), x)?;
        kiln_core::check_finite(x)?;
        let n = x.nrows();
        let fail = |e: candle_core::Error| kiln_core::Error::Numerical(e.to_string());
        let mut shape = vec![n];
        shape.extend(&self.row_shape);
        let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let xs = Tensor::from_vec(xs, shape, &Device::Cpu).map_err(fail)?; // (N, F) or (N, C, H, W)
        let out = (self.forward)(&xs).map_err(|e| kiln_core::Error::Numerical(e.to_string()))?; // (N, O)
        let values = out
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(fail)?;
        Array2::from_shape_vec(
            (n, self.outputs),
            values.into_iter().map(f64::from).collect(),
        )
        .map_err(|e| kiln_core::Error::Shape(e.to_string()))
    }
}

impl Predict for NetModel {
    fn n_features(&self) -> usize {
        self.row_shape.iter().product()
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> kiln_core::Result<Array1<f64>> {
        let out = self.outputs(x)?;
        if !self.classify {
            return Ok(out.column(0).to_owned());
        }
        Ok(kiln_core::argmax_rows(&out))
    }

    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> kiln_core::Result<Option<Array2<f64>>> {
        if !self.classify {
            return Ok(None);
        }
        Ok(Some(kiln_core::softmax_rows(self.outputs(x)?)))
    }
}

/// Largest width or height of an uploaded image, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 4096;

/// Decode a PNG (or any format the `image` crate reads with its enabled features) into one
/// row of pixels in (C, H, W) order for an image model: converted to the model's channels,
/// resized to its size, each value in [0, `pixel_max`] (255 keeps the 8-bit values, as MNIST
/// models expect; 16 suits the `digits` dataset).
pub fn image_row(
    bytes: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    pixel_max: f64,
) -> Result<Vec<f64>, ModelError> {
    let bad = |e: &dyn std::fmt::Display| {
        ModelError::input("image", format!("cannot decode the image: {e}"))
    };
    let mut reader = image::io::Reader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(&e))?;
    // A small file may declare a huge image: bound what decoding may allocate.
    let mut limits = image::io::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(64 << 20);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| bad(&e))?;
    let (w, h) = (width as u32, height as u32);
    let img = img.resize_exact(w, h, image::imageops::FilterType::Triangle);
    let scale = pixel_max / 255.0;
    match channels {
        1 => Ok(img
            .to_luma8()
            .pixels()
            .map(|p| p.0[0] as f64 * scale)
            .collect()),
        3 => {
            let rgb = img.to_rgb8();
            let mut out = vec![0.0; 3 * height * width];
            for (x, y, p) in rgb.enumerate_pixels() {
                for c in 0..3 {
                    out[c * height * width + y as usize * width + x as usize] =
                        p.0[c] as f64 * scale;
                }
            }
            Ok(out)
        }
        c => Err(ModelError::InvalidInput {
            param: None,
            message: format!("this model takes {c}-channel images; only 1 or 3 are supported"),
        }),
    }
}
