//! Recurrent models: a sequence classifier and a character-level language model with sampling.
//!
//! Both are built on [`kiln_nn::rnn::Rnn`] (RNN/LSTM/GRU with PyTorch's options and names).
//! * [`SequenceClassifier`]: (B, T, I) f32 sequences → the top layer's final hidden state
//!   (both directions concatenated when bidirectional) → linear `head` → K logits.
//! * [`CharLm`]: `embedding` (V, E) → `rnn` (batch first) → `head` (H → V), trained on
//!   next-character prediction; [`CharLm::generate`] samples with temperature, top-k and a seed.
//!
//! Legend: B batch, T time, I input features, E embedding, H hidden, D directions, V vocabulary.

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use kiln_nn::layers::{self, Dropout, Mode};
use kiln_nn::rnn::{CellKind, Rnn, RnnConfig, RnnState};
use kiln_nn::{loss, Error, EvalSums, Result, TrainStep};
use rand::Rng as _;

/// Sequence classifier hyperparameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SequenceClassifierConfig {
    /// The recurrence.
    pub cell: CellKind,
    /// The recurrent layer's options (`batch_first` is forced on).
    pub rnn: RnnConfig,
    /// Classes K (≥ 2).
    pub num_classes: usize,
}

/// Classifies whole sequences from the final hidden state.
pub struct SequenceClassifier {
    config: SequenceClassifierConfig,
    rnn: Rnn,
    head: Linear,
}

impl SequenceClassifier {
    /// Build from `vb` (parameters `rnn.*` with PyTorch names, `head.*`).
    pub fn new(mut config: SequenceClassifierConfig, vb: VarBuilder) -> Result<Self> {
        if config.num_classes < 2 {
            return Err(Error::param("num_classes", config.num_classes, "≥ 2"));
        }
        config.rnn.batch_first = true;
        let rnn = Rnn::new(config.cell, config.rnn.clone(), vb.pp("rnn"))?;
        let d = config.rnn.hidden_size * config.rnn.directions();
        let head = layers::linear(d, config.num_classes, vb.pp("head"))?;
        Ok(Self { config, rnn, head })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &SequenceClassifierConfig {
        &self.config
    }

    /// Logits (B, K) for sequences (B, T, I).
    pub fn forward(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        let (_, state) = self.rnn.forward(&xs.to_dtype(DType::F32)?, None, mode)?;
        let nd = self.config.rnn.directions();
        let ld = state.h.dim(0)?;
        // top layer's directions: rows L·D - D .. L·D of h_n (L·D, B, H)
        let top = state.h.narrow(0, ld - nd, nd)?; // (D, B, H)
        let feats = top.transpose(0, 1)?.flatten_from(1)?; // (B, D·H)
        layers::apply(&self.head, &feats) // (B, K)
    }
}

impl TrainStep for SequenceClassifier {
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

/// Character language model hyperparameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CharLmConfig {
    /// Vocabulary size V (default 65).
    pub vocab_size: usize,
    /// Embedding size E (default 64).
    pub embed_dim: usize,
    /// The recurrence (default lstm).
    pub cell: CellKind,
    /// Hidden size H (default 256).
    pub hidden_size: usize,
    /// Layers (default 2).
    pub num_layers: usize,
    /// Dropout between recurrent layers and before the head, in [0, 1) (default 0).
    pub dropout: f64,
}

impl Default for CharLmConfig {
    fn default() -> Self {
        Self {
            vocab_size: 65,
            embed_dim: 64,
            cell: CellKind::Lstm,
            hidden_size: 256,
            num_layers: 2,
            dropout: 0.0,
        }
    }
}

impl CharLmConfig {
    /// Check every option.
    pub fn validate(&self) -> Result<()> {
        if self.vocab_size < 2 {
            return Err(Error::param("vocab_size", self.vocab_size, "≥ 2"));
        }
        if self.embed_dim == 0 {
            return Err(Error::param("embed_dim", 0, "≥ 1"));
        }
        self.rnn_config().validate()
    }

    fn rnn_config(&self) -> RnnConfig {
        RnnConfig {
            input_size: self.embed_dim,
            hidden_size: self.hidden_size,
            num_layers: self.num_layers,
            bias: true,
            batch_first: true,
            dropout: self.dropout,
            bidirectional: false,
        }
    }
}

/// How to pick the next token.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// Divide the logits by this; 0 picks the most likely token (default 1).
    pub temperature: f64,
    /// Keep only the k most likely tokens; `None` keeps all (default none).
    pub top_k: Option<usize>,
    /// Seed of the sampler (default 0).
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            seed: 0,
        }
    }
}

impl SamplingConfig {
    /// Check the options.
    pub fn validate(&self) -> Result<()> {
        if self.temperature.is_nan() || self.temperature < 0.0 || self.temperature.is_infinite() {
            return Err(Error::param(
                "temperature",
                self.temperature,
                "a finite number ≥ 0",
            ));
        }
        if self.top_k == Some(0) {
            return Err(Error::param("top_k", 0, "≥ 1 (or none)"));
        }
        Ok(())
    }
}

/// Pick the next token from `logits` (one row of V values).
pub fn sample_next(logits: &[f32], cfg: &SamplingConfig, rng: &mut kiln_core::Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| {
                if v > b.1 {
                    (i, v)
                } else {
                    b
                }
            })
            .0 as u32
    };
    if cfg.temperature == 0.0 {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    if let Some(k) = cfg.top_k {
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        order.truncate(k.min(logits.len()));
    }
    let max = order
        .iter()
        .map(|&i| logits[i])
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / cfg.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return argmax();
    }
    let mut u = rng.random::<f64>() * total;
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    order[order.len() - 1] as u32
}

/// A character-level language model.
pub struct CharLm {
    config: CharLmConfig,
    embedding: Embedding,
    rnn: Rnn,
    dropout: Dropout,
    head: Linear,
}

impl CharLm {
    /// Build from `vb`: `embedding.weight` (V, E, PyTorch's N(0, 1) init), `rnn.*`, `head.*`.
    pub fn new(config: CharLmConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let emb = vb.get_with_hints(
            (config.vocab_size, config.embed_dim),
            "embedding.weight",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        )?;
        let embedding = Embedding::new(emb, config.embed_dim);
        let rnn = Rnn::new(config.cell, config.rnn_config(), vb.pp("rnn"))?;
        let head = layers::linear(config.hidden_size, config.vocab_size, vb.pp("head"))?;
        let dropout = Dropout::new(config.dropout)?;
        Ok(Self {
            config,
            embedding,
            rnn,
            dropout,
            head,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &CharLmConfig {
        &self.config
    }

    /// Logits (B, T, V) for token ids (B, T), continuing from `state`; returns the new state.
    pub fn forward_with_state(
        &self,
        ids: &Tensor,
        state: Option<&RnnState>,
        mode: &Mode,
    ) -> Result<(Tensor, RnnState)> {
        if ids.rank() != 2 {
            return Err(Error::shape(format!(
                "char LM: expected token ids (batch, time), got {:?}",
                ids.dims()
            )));
        }
        let ids = ids.to_dtype(DType::U32)?;
        let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>()? as usize;
        if max >= self.config.vocab_size {
            return Err(Error::shape(format!(
                "char LM: token id {max} out of range for a vocabulary of {}",
                self.config.vocab_size
            )));
        }
        let x = layers::apply(&self.embedding, &ids)?; // (B, T, E)
        let (h, st) = self.rnn.forward(&x, state, mode)?; // (B, T, H)
        let h = self.dropout.forward(&h, mode)?;
        Ok((layers::apply(&self.head, &h)?, st)) // (B, T, V)
    }

    /// Logits (B, T, V) for token ids (B, T).
    pub fn forward(&self, ids: &Tensor, mode: &Mode) -> Result<Tensor> {
        Ok(self.forward_with_state(ids, None, mode)?.0)
    }

    /// Continue `prompt` (at least one id) by `n` tokens, sampled with `cfg`.
    pub fn generate(&self, prompt: &[u32], n: usize, cfg: &SamplingConfig) -> Result<Vec<u32>> {
        cfg.validate()?;
        if prompt.is_empty() {
            return Err(Error::param("prompt", "empty", "at least one token"));
        }
        let mut rng = kiln_core::rng(cfg.seed);
        let mode = Mode::eval();
        let ids = Tensor::new(prompt, &Device::Cpu)?.unsqueeze(0)?; // (1, T)
        let (mut logits, mut state) = self.forward_with_state(&ids, None, &mode)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t = logits.dim(1)?;
            let last = logits.i((0, t - 1))?.to_vec1::<f32>()?; // (V)
            let next = sample_next(&last, cfg, &mut rng);
            out.push(next);
            let ids = Tensor::new(&[[next]], &Device::Cpu)?; // (1, 1)
            (logits, state) = self.forward_with_state(&ids, Some(&state), &mode)?;
        }
        Ok(out)
    }
}

impl TrainStep for CharLm {
    type Batch = (Tensor, Tensor);

    fn loss(&self, (x, y): &Self::Batch, mode: &Mode) -> Result<Tensor> {
        loss::cross_entropy(&self.forward(x, mode)?, y)
    }

    fn evaluate(&self, (x, y): &Self::Batch) -> Result<EvalSums> {
        let logits = self.forward(x, &Mode::eval())?;
        let n = y.elem_count();
        let l = loss::cross_entropy(&logits, y)?.to_scalar::<f32>()? as f64;
        Ok(EvalSums {
            loss_sum: l * n as f64,
            count: n,
            correct: Some(loss::correct(&logits, y)?),
        })
    }
}
