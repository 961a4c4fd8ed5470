//! [`Gpt2Config`]: GPT-2 hyperparameters, field for field the keys of a Hugging Face GPT-2
//! `config.json`, so `serde_json::from_str` reads one and `serde_json::to_string` writes one
//! that `transformers.GPT2LMHeadModel.from_pretrained` accepts.

use kiln_nn::{Error, Result};
use serde::{Deserialize, Serialize};

/// GPT-2 hyperparameters with Hugging Face's names. Unknown keys in a `config.json` are
/// tolerated (ignored); missing keys take the GPT-2 small defaults below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gpt2Config {
    /// Always `"gpt2"` (default `"gpt2"`); a folder whose `model_type` differs is refused.
    pub model_type: String,
    /// Vocabulary size V (default 50257).
    pub vocab_size: usize,
    /// Longest sequence, the rows of `wpe` (default 1024).
    pub n_positions: usize,
    /// Width C of the residual stream (default 768).
    pub n_embd: usize,
    /// Transformer blocks (default 12).
    pub n_layer: usize,
    /// Attention heads H; must divide `n_embd` (default 12).
    pub n_head: usize,
    /// Width of the MLP's hidden layer; `None` means 4·n_embd (default none).
    pub n_inner: Option<usize>,
    /// MLP nonlinearity: `gelu_new` (tanh approximation, GPT-2's), `gelu_pytorch_tanh`,
    /// `gelu_fast`, `gelu` (exact erf), `relu`, `silu`/`swish`, `tanh` (default `gelu_new`).
    pub activation_function: String,
    /// Dropout on residual branches in training (default 0.1).
    pub resid_pdrop: f64,
    /// Dropout on the embeddings in training (default 0.1).
    pub embd_pdrop: f64,
    /// Dropout on attention probabilities in training (default 0.1).
    pub attn_pdrop: f64,
    /// Epsilon of every layer norm (default 1e-5).
    pub layer_norm_epsilon: f64,
    /// Standard deviation of the normal initialisation (default 0.02).
    pub initializer_range: f64,
    /// Divide attention scores by sqrt(head size) (default true).
    pub scale_attn_weights: bool,
    /// Further divide the scores of block i by i + 1 (default false).
    pub scale_attn_by_inverse_layer_idx: bool,
    /// The output projection is `wte` transposed (default true); when false the folder holds a
    /// separate `lm_head.weight` (V, C).
    pub tie_word_embeddings: bool,
    /// Beginning-of-text token (default 50256).
    pub bos_token_id: Option<u32>,
    /// End-of-text token (default 50256).
    pub eos_token_id: Option<u32>,
    /// Model classes, as transformers writes them (default `["GPT2LMHeadModel"]`).
    pub architectures: Option<Vec<String>>,
}

impl Default for Gpt2Config {
    /// GPT-2 small (124M parameters).
    fn default() -> Self {
        Self {
            model_type: "gpt2".into(),
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            activation_function: "gelu_new".into(),
            resid_pdrop: 0.1,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
            layer_norm_epsilon: 1e-5,
            initializer_range: 0.02,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            tie_word_embeddings: true,
            bos_token_id: Some(50256),
            eos_token_id: Some(50256),
            architectures: Some(vec!["GPT2LMHeadModel".into()]),
        }
    }
}

/// The MLP nonlinearities a GPT-2 config may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpt2Activation {
    /// GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    /// GELU, exact (`gelu`).
    GeluErf,
    /// `relu`.
    Relu,
    /// `silu` / `swish`.
    Silu,
    /// `tanh`.
    Tanh,
}

impl Gpt2Activation {
    /// Parse a transformers activation name.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "gelu" => Self::GeluErf,
            "relu" => Self::Relu,
            "silu" | "swish" => Self::Silu,
            "tanh" => Self::Tanh,
            other => {
                return Err(Error::param(
                    "activation_function",
                    format!("{other:?}"),
                    "one of gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, relu, silu, swish, tanh",
                ))
            }
        })
    }
}

impl Gpt2Config {
    /// A config of the given shape with every other field at its default (V 50257).
    pub fn sized(n_layer: usize, n_head: usize, n_embd: usize, n_positions: usize) -> Self {
        Self {
            n_layer,
            n_head,
            n_embd,
            n_positions,
            ..Default::default()
        }
    }

    /// Width of the MLP's hidden layer (`n_inner`, or 4·n_embd).
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Size of one attention head (n_embd / n_head).
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    /// The MLP nonlinearity.
    pub fn activation(&self) -> Result<Gpt2Activation> {
        Gpt2Activation::parse(&self.activation_function)
    }

    /// Check every field: sizes ≥ 1, `n_head` divides `n_embd`, probabilities in [0, 1),
    /// epsilon > 0, token ids below `vocab_size`, a known activation.
    pub fn validate(&self) -> Result<()> {
        if self.model_type != "gpt2" {
            return Err(Error::param(
                "model_type",
                format!("{:?}", self.model_type),
                "\"gpt2\"",
            ));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
        ] {
            if v == 0 {
                return Err(Error::param(name, v, "≥ 1"));
            }
        }
        if self.n_inner == Some(0) {
            return Err(Error::param("n_inner", 0, "≥ 1 (or null for 4·n_embd)"));
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(Error::param(
                "n_head",
                self.n_head,
                &format!("a divisor of n_embd = {}", self.n_embd),
            ));
        }
        for (name, p) in [
            ("resid_pdrop", self.resid_pdrop),
            ("embd_pdrop", self.embd_pdrop),
            ("attn_pdrop", self.attn_pdrop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::param(name, p, "in [0, 1)"));
            }
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err(Error::param(
                "layer_norm_epsilon",
                self.layer_norm_epsilon,
                "> 0",
            ));
        }
        if self.initializer_range.is_nan() || self.initializer_range < 0.0 {
            return Err(Error::param(
                "initializer_range",
                self.initializer_range,
                "≥ 0",
            ));
        }
        for (name, id) in [
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
        ] {
            if let Some(id) = id {
                if id as usize >= self.vocab_size {
                    return Err(Error::param(
                        name,
                        id,
                        &format!("a token id below vocab_size = {}", self.vocab_size),
                    ));
                }
            }
        }
        self.activation()?;
        Ok(())
    }
}
