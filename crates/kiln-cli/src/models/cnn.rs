//! Convolution stacks in the CLI: the model folder that `kiln train cnn` writes into
//! `RUN_DIR/model/`, read back for `kiln eval` and `kiln predict` on tables whose rows are
//! images flattened in (C, H, W) order (the `digits` dataset: 64 pixels of an 8×8 image).

use std::path::Path;

use candle_core::{Device, Tensor};
use kiln_core::folder::{ModelFolder, ModelMeta, Tensors};
use kiln_core::Predict;
use kiln_models::cnn::{ConvStack, ConvStackConfig};
use kiln_nn::Mode;
use ndarray::{Array1, Array2, ArrayView2};
use serde_json::{json, Value};

use super::mlp::{argmax_rows, nn_err, softmax_rows};
use super::CliModel;

/// The `kind` of a convolution-stack model folder.
pub const KIND: &str = "conv_stack";

/// A trained convolution stack with the tensors it was built from.
pub struct ConvModel {
    net: ConvStack,
    tensors: Tensors,
}

impl ConvModel {
    /// Read the convolution-stack model folder in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<(ModelMeta, Self)> {
        let (_, tensors) = ModelFolder::load_parts(dir)?;
        let (config, vb) = kiln_models::folder::load(dir, KIND)?;
        let net_config: ConvStackConfig =
            serde_json::from_value(config.model.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "{}: config.json \"model\" is not a conv stack config: {e}",
                    dir.display()
                )
            })?;
        let net = ConvStack::new(net_config, vb)?;
        Ok((config.meta, Self { net, tensors }))
    }

    /// Logits (N, K) for rows of flattened (C, H, W) images.
    fn logits(&self, x: ArrayView2<'_, f64>) -> kiln_core::Result<Array2<f64>> {
        kiln_core::check_features(self.n_features(), x)?;
        kiln_core::check_finite(x)?;
        let c = self.net.config();
        let (h, w) = c.image_size;
        let n = x.nrows();
        let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let xs = Tensor::from_vec(xs, (n, c.in_channels, h, w), &Device::Cpu) // (B, C, H, W)
            .map_err(|e| nn_err(e.into()))?;
        let out = self.net.forward(&xs, &Mode::eval()).map_err(nn_err)?; // (B, K)
        let values = out
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| nn_err(e.into()))?;
        Array2::from_shape_vec(
            (n, c.num_classes),
            values.into_iter().map(f64::from).collect(),
        )
        .map_err(|e| kiln_core::Error::Shape(e.to_string()))
    }
}

impl Predict for ConvModel {
    fn n_features(&self) -> usize {
        let c = self.net.config();
        c.in_channels * c.image_size.0 * c.image_size.1
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> kiln_core::Result<Array1<f64>> {
        Ok(argmax_rows(&self.logits(x)?))
    }

    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> kiln_core::Result<Option<Array2<f64>>> {
        Ok(Some(softmax_rows(self.logits(x)?)))
    }
}

impl CliModel for ConvModel {
    fn info(&self, _meta: &ModelMeta) -> Value {
        json!({ "config": self.net.config() })
    }

    fn summary(&self, _meta: &ModelMeta) -> Vec<(String, String)> {
        let c = self.net.config();
        let channels: Vec<String> = c
            .blocks
            .iter()
            .map(|b| b.out_channels.to_string())
            .collect();
        vec![
            (
                "input".into(),
                format!("{}×{}×{}", c.in_channels, c.image_size.0, c.image_size.1),
            ),
            ("conv channels".into(), channels.join(", ")),
            ("classes".into(), c.num_classes.to_string()),
        ]
    }

    fn save(&self, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()> {
        let config = serde_json::to_value(self.net.config())
            .map_err(|e| kiln_core::Error::folder(dir, format!("cannot encode config: {e}")))?;
        ModelFolder::save_parts(dir, KIND, meta, config, &self.tensors)
    }
}
