//! Multi-layer perceptron for tabular classification and regression.
//!
//! `Linear → activation → dropout` for each hidden size, then a linear head; parameters
//! `layers.{i}.weight|bias` and `head.weight|bias`. Classification trains with cross-entropy on
//! class indices (u32), regression with MSE on values (f32, shape (B) or (B, outputs)).
//!
//! Legend: B batch, F input features, O outputs (classes or regression targets).

use candle_core::{DType, Tensor};
use candle_nn::{Linear, VarBuilder};
use kiln_nn::layers::{self, Activation, Dropout, Mode};
use kiln_nn::{loss, Error, EvalSums, Result, TrainStep};

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MlpTask {
    /// Class indices, cross-entropy loss (the default).
    #[default]
    Classification,
    /// Real values, mean squared error.
    Regression,
}

/// MLP hyperparameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MlpConfig {
    /// Input features F (default 1).
    pub input_dim: usize,
    /// Hidden layer sizes (default [64]).
    pub hidden: Vec<usize>,
    /// Outputs O: classes, or regression targets (default 2).
    pub output_dim: usize,
    /// Hidden activation (default relu).
    pub activation: Activation,
    /// Dropout after each hidden activation, in [0, 1) (default 0).
    pub dropout: f64,
    /// Classification or regression (default classification).
    pub task: MlpTask,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            input_dim: 1,
            hidden: vec![64],
            output_dim: 2,
            activation: Activation::Relu,
            dropout: 0.0,
            task: MlpTask::Classification,
        }
    }
}

impl MlpConfig {
    /// Check every option.
    pub fn validate(&self) -> Result<()> {
        if self.input_dim == 0 {
            return Err(Error::param("input_dim", 0, "≥ 1"));
        }
        if self.output_dim == 0 {
            return Err(Error::param("output_dim", 0, "≥ 1"));
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return Err(Error::param(&format!("hidden[{i}]"), 0, "≥ 1"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::param("dropout", self.dropout, "in [0, 1)"));
        }
        if self.task == MlpTask::Classification && self.output_dim < 2 {
            return Err(Error::param(
                "output_dim",
                self.output_dim,
                "≥ 2 classes for classification",
            ));
        }
        Ok(())
    }
}

/// A multi-layer perceptron.
pub struct Mlp {
    config: MlpConfig,
    layers: Vec<Linear>,
    head: Linear,
    dropout: Dropout,
}

impl Mlp {
    /// Build from `vb` (a `SeededVarMap` to train, a model folder to load).
    pub fn new(config: MlpConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let mut layers = Vec::with_capacity(config.hidden.len());
        let mut d = config.input_dim;
        for (i, &h) in config.hidden.iter().enumerate() {
            layers.push(layers::linear(d, h, vb.pp(format!("layers.{i}")))?);
            d = h;
        }
        let head = layers::linear(d, config.output_dim, vb.pp("head"))?;
        let dropout = Dropout::new(config.dropout)?;
        Ok(Self {
            config,
            layers,
            head,
            dropout,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// Outputs (B, O) for inputs (B, F): logits or predicted values.
    pub fn forward(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        if xs.rank() != 2 || xs.dim(1)? != self.config.input_dim {
            return Err(Error::shape(format!(
                "MLP: expected input (batch, {}), got {:?}",
                self.config.input_dim,
                xs.dims()
            )));
        }
        let mut h = xs.to_dtype(DType::F32)?;
        for l in &self.layers {
            h = layers::apply(l, &h)?; // (B, H_i)
            h = self.config.activation.forward(&h)?;
            h = self.dropout.forward(&h, mode)?;
        }
        layers::apply(&self.head, &h) // (B, O)
    }

    fn loss_of(&self, out: &Tensor, y: &Tensor) -> Result<Tensor> {
        match self.config.task {
            MlpTask::Classification => loss::cross_entropy(out, y),
            MlpTask::Regression => loss::mse(out, &y.to_dtype(DType::F32)?.reshape(out.shape())?),
        }
    }
}

impl TrainStep for Mlp {
    type Batch = (Tensor, Tensor);

    fn loss(&self, (x, y): &Self::Batch, mode: &Mode) -> Result<Tensor> {
        self.loss_of(&self.forward(x, mode)?, y)
    }

    fn evaluate(&self, (x, y): &Self::Batch) -> Result<EvalSums> {
        let out = self.forward(x, &Mode::eval())?;
        let n = x.dim(0)?;
        let l = self.loss_of(&out, y)?.to_scalar::<f32>()? as f64;
        let correct = match self.config.task {
            MlpTask::Classification => Some(loss::correct(&out, y)?),
            MlpTask::Regression => None,
        };
        Ok(EvalSums {
            loss_sum: l * n as f64,
            count: n,
            correct,
        })
    }
}
