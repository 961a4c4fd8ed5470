//! Convolutional networks in the CLI (a conv stack or LeNet-5): the model folder that
//! `kiln train cnn` writes into
//! `RUN_DIR/model/`, read back for `kiln eval` and `kiln predict` on tables whose rows are
//! images flattened in (C, H, W) order (the `digits` dataset: 64 pixels of an 8×8 image).

use std::path::Path;

use candle_core::{Device, Tensor};
use kiln_core::folder::{ModelFolder, ModelMeta, Tensors};
use kiln_core::Predict;
use kiln_models::cnn::{ConvStack, ConvStackConfig, LeNet5, LeNetConfig};
use kiln_nn::Mode;
use ndarray::{Array1, Array2, ArrayView2};
use serde_json::{json, Value};

use super::mlp::nn_err;
use super::{CliModel, ImageInput};
use kiln_core::{argmax_rows, softmax_rows};

/// The `kind` of a convolution-stack model folder.
pub const KIND: &str = "conv_stack";
/// The `kind` of a LeNet-5 model folder.
pub const LENET_KIND: &str = "lenet5";

enum Net {
    Stack(ConvStack),
    LeNet(LeNet5),
}

/// A trained convolutional network with the tensors it was built from.
pub struct ConvModel {
    net: Net,
    tensors: Tensors,
}

impl ConvModel {
    /// Read the model folder of `kind` ([`KIND`] or [`LENET_KIND`]) in `dir`.
    pub fn load(dir: &Path, kind: &str) -> anyhow::Result<(ModelMeta, Self)> {
        let (_, tensors) = ModelFolder::load_parts(dir)?;
        let (config, vb) = kiln_models::folder::load(dir, kind)?;
        let bad = |e: serde_json::Error| {
            anyhow::anyhow!(
                "{}: config.json \"model\" is not a {kind} config: {e}",
                dir.display()
            )
        };
        let net = if kind == LENET_KIND {
            let c: LeNetConfig = serde_json::from_value(config.model.clone()).map_err(bad)?;
            Net::LeNet(LeNet5::new(c, vb)?)
        } else {
            let c: ConvStackConfig = serde_json::from_value(config.model.clone()).map_err(bad)?;
            Net::Stack(ConvStack::new(c, vb)?)
        };
        Ok((config.meta, Self { net, tensors }))
    }

    /// Channels, (height, width), classes.
    fn shape(&self) -> (usize, (usize, usize), usize) {
        match &self.net {
            Net::Stack(n) => {
                let c = n.config();
                (c.in_channels, c.image_size, c.num_classes)
            }
            Net::LeNet(n) => {
                let c = n.config();
                (c.in_channels, (c.image_size, c.image_size), c.num_classes)
            }
        }
    }

    fn config_json(&self) -> serde_json::Result<Value> {
        match &self.net {
            Net::Stack(n) => serde_json::to_value(n.config()),
            Net::LeNet(n) => serde_json::to_value(n.config()),
        }
    }

    /// Logits (N, K) for rows of flattened (C, H, W) images.
    fn logits(&self, x: ArrayView2<'_, f64>) -> kiln_core::Result<Array2<f64>> {
        kiln_core::check_features(self.n_features(), x)?;
        kiln_core::check_finite(x)?;
        let (c, (h, w), k) = self.shape();
        let n = x.nrows();
        let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let xs = Tensor::from_vec(xs, (n, c, h, w), &Device::Cpu) // (B, C, H, W)
            .map_err(|e| nn_err(e.into()))?;
        let out = match &self.net {
            Net::Stack(net) => net.forward(&xs, &Mode::eval()),
            Net::LeNet(net) => net.forward(&xs, &Mode::eval()),
        }
        .map_err(nn_err)?; // (B, K)
        let values = out
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| nn_err(e.into()))?;
        Array2::from_shape_vec((n, k), values.into_iter().map(f64::from).collect())
            .map_err(|e| kiln_core::Error::Shape(e.to_string()))
    }
}

impl Predict for ConvModel {
    fn n_features(&self) -> usize {
        let (c, (h, w), _) = self.shape();
        c * h * w
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
        json!({ "config": self.config_json().unwrap_or(Value::Null) })
    }

    fn summary(&self, _meta: &ModelMeta) -> Vec<(String, String)> {
        let (c, (h, w), k) = self.shape();
        let arch = match &self.net {
            Net::Stack(n) => {
                let ch: Vec<String> = n
                    .config()
                    .blocks
                    .iter()
                    .map(|b| b.out_channels.to_string())
                    .collect();
                format!("conv stack, channels {}", ch.join(", "))
            }
            Net::LeNet(_) => "LeNet-5".to_string(),
        };
        vec![
            ("architecture".into(), arch),
            ("input".into(), format!("{c}×{h}×{w}")),
            ("classes".into(), k.to_string()),
        ]
    }

    fn save(&self, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()> {
        let config = self
            .config_json()
            .map_err(|e| kiln_core::Error::folder(dir, format!("cannot encode config: {e}")))?;
        let kind = match self.net {
            Net::Stack(_) => KIND,
            Net::LeNet(_) => LENET_KIND,
        };
        ModelFolder::save_parts(dir, kind, meta, config, &self.tensors)
    }

    fn image_input(&self, _meta: &ModelMeta) -> Option<ImageInput> {
        let (channels, (height, width), _) = self.shape();
        Some(ImageInput {
            channels,
            height,
            width,
        })
    }
}
