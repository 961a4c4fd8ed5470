//! Multi-layer perceptrons in the CLI: the model folder that `kiln train mlp` writes into
//! `RUN_DIR/model/`, read back for `kiln eval` and `kiln predict`.

use std::path::Path;

use candle_core::{Device, Tensor};
use kiln_core::folder::{ModelFolder, ModelMeta, Tensors};
use kiln_core::{argmax_rows, softmax_rows, Predict};
use kiln_models::mlp::{Mlp, MlpConfig, MlpTask};
use kiln_nn::Mode;
use ndarray::{Array1, Array2, ArrayView2};
use serde_json::{json, Value};

use super::{CliModel, ImageInput};

/// The `kind` of an MLP model folder.
pub const KIND: &str = "mlp";

/// A trained MLP with the tensors it was built from (to save it again unchanged).
pub struct MlpModel {
    mlp: Mlp,
    tensors: Tensors,
}

pub(crate) fn nn_err(e: kiln_nn::Error) -> kiln_core::Error {
    kiln_core::Error::Numerical(format!("MLP forward pass: {e}"))
}

impl MlpModel {
    /// Read the MLP model folder in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<(ModelMeta, Self)> {
        let (_, tensors) = ModelFolder::load_parts(dir)?;
        let (config, vb) = kiln_models::folder::load(dir, KIND)?;
        let mlp_config: MlpConfig = serde_json::from_value(config.model.clone()).map_err(|e| {
            anyhow::anyhow!(
                "{}: config.json \"model\" is not an MLP config: {e}",
                dir.display()
            )
        })?;
        let mlp = Mlp::new(mlp_config, vb)?;
        Ok((config.meta, Self { mlp, tensors }))
    }

    /// Network outputs (N, O) as f64 rows: logits or predicted values.
    fn outputs(&self, x: ArrayView2<'_, f64>) -> kiln_core::Result<Array2<f64>> {
        kiln_core::check_features(self.n_features(), x)?;
        kiln_core::check_finite(x)?;
        let (n, f) = x.dim();
        let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let xs = Tensor::from_vec(xs, (n, f), &Device::Cpu).map_err(|e| nn_err(e.into()))?;
        let out = self.mlp.forward(&xs, &Mode::eval()).map_err(nn_err)?; // (N, O)
        let o = self.mlp.config().output_dim;
        let values = out
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| nn_err(e.into()))?;
        Array2::from_shape_vec((n, o), values.into_iter().map(f64::from).collect())
            .map_err(|e| kiln_core::Error::Shape(e.to_string()))
    }
}

impl Predict for MlpModel {
    fn n_features(&self) -> usize {
        self.mlp.config().input_dim
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> kiln_core::Result<Array1<f64>> {
        let out = self.outputs(x)?;
        Ok(match self.mlp.config().task {
            MlpTask::Classification => argmax_rows(&out),
            MlpTask::Regression => out.column(0).to_owned(),
        })
    }

    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> kiln_core::Result<Option<Array2<f64>>> {
        if self.mlp.config().task != MlpTask::Classification {
            return Ok(None);
        }
        Ok(Some(softmax_rows(self.outputs(x)?)))
    }
}

impl CliModel for MlpModel {
    fn info(&self, _meta: &ModelMeta) -> Value {
        json!({ "config": self.mlp.config() })
    }

    fn summary(&self, _meta: &ModelMeta) -> Vec<(String, String)> {
        let c = self.mlp.config();
        vec![
            ("layers".into(), {
                let mut dims = vec![c.input_dim];
                dims.extend(&c.hidden);
                dims.push(c.output_dim);
                dims.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            }),
            (
                "activation".into(),
                serde_json::to_value(c.activation)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
            ),
            ("dropout".into(), c.dropout.to_string()),
        ]
    }

    fn save(&self, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()> {
        let config = serde_json::to_value(self.mlp.config())
            .map_err(|e| kiln_core::Error::folder(dir, format!("cannot encode config: {e}")))?;
        ModelFolder::save_parts(dir, KIND, meta, config, &self.tensors)
    }

    /// A classifier over a square number of columns all named `pixel...` (the built-in
    /// digits, MNIST) reads one grayscale square image.
    fn image_input(&self, meta: &ModelMeta) -> Option<ImageInput> {
        let n = self.n_features();
        let side = (n as f64).sqrt().round() as usize;
        let pixels = meta.features.iter().all(|f| f.starts_with("pixel"));
        (self.mlp.config().task == MlpTask::Classification && side * side == n && n > 1 && pixels)
            .then_some(ImageInput {
                channels: 1,
                height: side,
                width: side,
            })
    }
}
