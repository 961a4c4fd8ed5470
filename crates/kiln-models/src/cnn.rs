//! Convolutional image classifiers: LeNet-5 and a configurable stack.
//!
//! * [`LeNet5`] (LeCun et al. 1998, "Gradient-based learning applied to document recognition"),
//!   in its common modern form: `conv1` (6 filters 5×5, padding 2 for 28×28 inputs) → ReLU →
//!   max-pool 2 → `conv2` (16 filters 5×5) → ReLU → max-pool 2 → `fc1` 400→120 → ReLU → `fc2`
//!   120→84 → ReLU → `fc3` 84→classes. Names as the usual PyTorch module.
//! * [`ConvStack`]: blocks of conv → (batch norm) → activation → (pool) → (dropout), then
//!   hidden linear layers and a head; parameters `blocks.{i}.conv`, `blocks.{i}.bn`,
//!   `classifier.{j}`, `head`.
//!
//! Both take (B, C, H, W) f32 images with C = 1 or 3 and train with cross-entropy on u32 labels.
//! Legend: B batch, C channels, H height, W width, K classes.

use candle_core::{DType, Tensor};
use candle_nn::{Linear, VarBuilder};
use kiln_nn::layers::{self, Activation, BatchNorm, Conv2d, Dropout, Mode};
use kiln_nn::ops::{self, Pool2d};
use kiln_nn::{loss, Error, EvalSums, Result, TrainStep};

/// LeNet-5 hyperparameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LeNetConfig {
    /// Image channels, 1 or 3 (default 1).
    pub in_channels: usize,
    /// Square image side: 28 (conv1 padded by 2) or 32 (unpadded) (default 28).
    pub image_size: usize,
    /// Classes K (default 10).
    pub num_classes: usize,
}

impl Default for LeNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            image_size: 28,
            num_classes: 10,
        }
    }
}

impl LeNetConfig {
    /// Check every option.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.in_channels, 1 | 3) {
            return Err(Error::param("in_channels", self.in_channels, "1 or 3"));
        }
        if !matches!(self.image_size, 28 | 32) {
            return Err(Error::param("image_size", self.image_size, "28 or 32"));
        }
        if self.num_classes < 2 {
            return Err(Error::param("num_classes", self.num_classes, "≥ 2"));
        }
        Ok(())
    }
}

fn check_images(xs: &Tensor, c: usize, h: usize, w: usize, what: &str) -> Result<()> {
    if xs.rank() != 4 || xs.dims()[1..] != [c, h, w] {
        return Err(Error::shape(format!(
            "{what}: expected images (batch, {c}, {h}, {w}), got {:?}",
            xs.dims()
        )));
    }
    Ok(())
}

/// LeNet-5.
pub struct LeNet5 {
    config: LeNetConfig,
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl LeNet5 {
    /// Build from `vb`.
    pub fn new(config: LeNetConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let pad = if config.image_size == 28 { 2 } else { 0 };
        Ok(Self {
            conv1: layers::conv2d(config.in_channels, 6, 5, 1, pad, vb.pp("conv1"))?,
            conv2: layers::conv2d(6, 16, 5, 1, 0, vb.pp("conv2"))?,
            fc1: layers::linear(16 * 5 * 5, 120, vb.pp("fc1"))?,
            fc2: layers::linear(120, 84, vb.pp("fc2"))?,
            fc3: layers::linear(84, config.num_classes, vb.pp("fc3"))?,
            config,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &LeNetConfig {
        &self.config
    }

    /// Logits (B, K) for images (B, C, S, S).
    pub fn forward(&self, xs: &Tensor, _mode: &Mode) -> Result<Tensor> {
        let s = self.config.image_size;
        check_images(xs, self.config.in_channels, s, s, "LeNet-5")?;
        let pool = Pool2d::square(2, 2, 0);
        let h = ops::relu(&layers::apply(&self.conv1, &xs.to_dtype(DType::F32)?)?)?; // (B, 6, 28, 28)
        let h = ops::max_pool2d(&h, pool)?; // (B, 6, 14, 14)
        let h = ops::relu(&layers::apply(&self.conv2, &h)?)?; // (B, 16, 10, 10)
        let h = ops::max_pool2d(&h, pool)?; // (B, 16, 5, 5)
        let h = h.flatten_from(1)?; // (B, 400)
        let h = ops::relu(&layers::apply(&self.fc1, &h)?)?; // (B, 120)
        let h = ops::relu(&layers::apply(&self.fc2, &h)?)?; // (B, 84)
        layers::apply(&self.fc3, &h) // (B, K)
    }
}

/// Pooling after a convolution block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    /// Max pooling.
    Max,
    /// Average pooling.
    Avg,
}

/// One block of a [`ConvStack`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ConvBlock {
    /// Output channels (default 16).
    pub out_channels: usize,
    /// Square kernel size (default 3).
    pub kernel: usize,
    /// Stride (default 1).
    pub stride: usize,
    /// Zero padding (default 1).
    pub padding: usize,
    /// Batch norm after the convolution (default false).
    pub batch_norm: bool,
    /// Pooling after the activation (default max 2×2 stride 2).
    pub pool: Option<(PoolKind, Pool2d)>,
    /// Dropout at the end of the block, in [0, 1) (default 0).
    pub dropout: f64,
}

impl Default for ConvBlock {
    fn default() -> Self {
        Self {
            out_channels: 16,
            kernel: 3,
            stride: 1,
            padding: 1,
            batch_norm: false,
            pool: Some((PoolKind::Max, Pool2d::square(2, 2, 0))),
            dropout: 0.0,
        }
    }
}

/// Hyperparameters of a [`ConvStack`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ConvStackConfig {
    /// Image channels, 1 or 3 (default 1).
    pub in_channels: usize,
    /// Image (height, width) (default (28, 28)).
    pub image_size: (usize, usize),
    /// Convolution blocks (default two default blocks of 16 and 32 channels).
    pub blocks: Vec<ConvBlock>,
    /// Hidden linear layers after flattening (default [128]).
    pub hidden: Vec<usize>,
    /// Dropout before each hidden linear layer and the head, in [0, 1) (default 0).
    pub dropout: f64,
    /// Activation (default relu).
    pub activation: Activation,
    /// Classes K (default 10).
    pub num_classes: usize,
}

impl Default for ConvStackConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            image_size: (28, 28),
            blocks: vec![
                ConvBlock::default(),
                ConvBlock {
                    out_channels: 32,
                    ..ConvBlock::default()
                },
            ],
            hidden: vec![128],
            dropout: 0.0,
            activation: Activation::Relu,
            num_classes: 10,
        }
    }
}

impl ConvStackConfig {
    /// Check every option and that the image survives every block; returns the flattened size.
    pub fn validate(&self) -> Result<usize> {
        if !matches!(self.in_channels, 1 | 3) {
            return Err(Error::param("in_channels", self.in_channels, "1 or 3"));
        }
        if self.num_classes < 2 {
            return Err(Error::param("num_classes", self.num_classes, "≥ 2"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::param("dropout", self.dropout, "in [0, 1)"));
        }
        let (mut c, (mut h, mut w)) = (self.in_channels, self.image_size);
        for (i, b) in self.blocks.iter().enumerate() {
            let name = |p: &str| format!("blocks[{i}].{p}");
            if b.out_channels == 0 {
                return Err(Error::param(&name("out_channels"), 0, "≥ 1"));
            }
            if b.kernel == 0 || b.stride == 0 {
                return Err(Error::param(
                    &name("kernel/stride"),
                    format!("{}/{}", b.kernel, b.stride),
                    "both ≥ 1",
                ));
            }
            if !(0.0..1.0).contains(&b.dropout) {
                return Err(Error::param(&name("dropout"), b.dropout, "in [0, 1)"));
            }
            let (hp, wp) = (h + 2 * b.padding, w + 2 * b.padding);
            if hp < b.kernel || wp < b.kernel {
                return Err(Error::shape(format!(
                    "block {i}: a {h}×{w} input (padded {hp}×{wp}) is smaller than the {k}×{k} kernel",
                    k = b.kernel
                )));
            }
            h = (hp - b.kernel) / b.stride + 1;
            w = (wp - b.kernel) / b.stride + 1;
            if let Some((_, p)) = &b.pool {
                p.validate()?;
                (h, w) = p
                    .output_size(h, w)
                    .map_err(|e| Error::shape(format!("block {i} pooling: {e}")))?;
            }
            c = b.out_channels;
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return Err(Error::param(&format!("hidden[{i}]"), 0, "≥ 1"));
        }
        Ok(c * h * w)
    }
}

struct Block {
    conv: Conv2d,
    bn: Option<BatchNorm>,
    pool: Option<(PoolKind, Pool2d)>,
    dropout: Dropout,
}

/// A configurable convolutional classifier.
pub struct ConvStack {
    config: ConvStackConfig,
    blocks: Vec<Block>,
    classifier: Vec<Linear>,
    head: Linear,
    dropout: Dropout,
}

impl ConvStack {
    /// Build from `vb`.
    pub fn new(config: ConvStackConfig, vb: VarBuilder) -> Result<Self> {
        let flat = config.validate()?;
        let mut blocks = Vec::with_capacity(config.blocks.len());
        let mut c = config.in_channels;
        for (i, b) in config.blocks.iter().enumerate() {
            let vbi = vb.pp(format!("blocks.{i}"));
            blocks.push(Block {
                conv: layers::conv2d(
                    c,
                    b.out_channels,
                    b.kernel,
                    b.stride,
                    b.padding,
                    vbi.pp("conv"),
                )?,
                bn: if b.batch_norm {
                    Some(BatchNorm::new(b.out_channels, vbi.pp("bn"))?)
                } else {
                    None
                },
                pool: b.pool,
                dropout: Dropout::new(b.dropout)?,
            });
            c = b.out_channels;
        }
        let mut classifier = Vec::new();
        let mut d = flat;
        for (j, &h) in config.hidden.iter().enumerate() {
            classifier.push(layers::linear(d, h, vb.pp(format!("classifier.{j}")))?);
            d = h;
        }
        let head = layers::linear(d, config.num_classes, vb.pp("head"))?;
        let dropout = Dropout::new(config.dropout)?;
        Ok(Self {
            config,
            blocks,
            classifier,
            head,
            dropout,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &ConvStackConfig {
        &self.config
    }

    /// Logits (B, K) for images (B, C, H, W).
    pub fn forward(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        let (h, w) = self.config.image_size;
        check_images(xs, self.config.in_channels, h, w, "conv stack")?;
        let act = self.config.activation;
        let mut x = xs.to_dtype(DType::F32)?;
        for b in &self.blocks {
            x = layers::apply(&b.conv, &x)?; // (B, C_i, H_i, W_i)
            if let Some(bn) = &b.bn {
                x = bn.forward(&x, mode)?;
            }
            x = act.forward(&x)?;
            x = match b.pool {
                Some((PoolKind::Max, p)) => ops::max_pool2d(&x, p)?,
                Some((PoolKind::Avg, p)) => ops::avg_pool2d(&x, p)?,
                None => x,
            };
            x = b.dropout.forward(&x, mode)?;
        }
        let mut x = x.flatten_from(1)?; // (B, C·H·W)
        for l in &self.classifier {
            x = self.dropout.forward(&x, mode)?;
            x = act.forward(&layers::apply(l, &x)?)?;
        }
        let x = self.dropout.forward(&x, mode)?;
        layers::apply(&self.head, &x) // (B, K)
    }
}

/// Cross-entropy training and accuracy for any network with an image `forward`.
macro_rules! image_classifier {
    ($t:ty) => {
        impl TrainStep for $t {
            type Batch = (Tensor, Tensor);

            fn loss(&self, (x, y): &Self::Batch, mode: &Mode) -> Result<Tensor> {
                loss::cross_entropy(&self.forward(x, mode)?, y)
            }

            fn evaluate(&self, (x, y): &Self::Batch) -> Result<EvalSums> {
                let logits = self.forward(x, &Mode::eval())?;
                let n = x.dim(0)?;
                let l = loss::cross_entropy(&logits, y)?.to_scalar::<f32>()? as f64;
                Ok(EvalSums {
                    loss_sum: l * n as f64,
                    count: n,
                    correct: Some(loss::correct(&logits, y)?),
                })
            }
        }
    };
}

image_classifier!(LeNet5);
image_classifier!(ConvStack);
