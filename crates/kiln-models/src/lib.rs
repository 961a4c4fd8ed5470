//! # kiln-models: named networks
//!
//! Every network is built from a candle `VarBuilder` — a [`kiln_nn::init::SeededVarMap`] to
//! train, a model folder ([`folder::load`]) to predict — and implements
//! [`kiln_nn::TrainStep`] beside its forward pass, so `kiln-train` can drive it without
//! knowing what it is.
//!
//! * [`mlp`]: multi-layer perceptron for tabular classification and regression.
//! * [`cnn`]: LeNet-5 and a configurable convolution stack.
//! * [`rnn`]: RNN/LSTM/GRU sequence classifier and character language model with sampling.
//! * [`gpt2`]: GPT-2 with Hugging Face names, KV-cached generation, HF folder loading.
//! * [`tokenizer`]: GPT-2's byte-level BPE tokenizer.
//! * [`tokenizer_train`]: character-level and byte-level BPE tokenizers made from a corpus.
//! * [`vqvae`]: VQ-VAE image tokenizer (32×32 RGB ↔ 8×8 codes, EMA codebook).
//! * [`clip`]: a small CLIP (caption and picture encoders, InfoNCE), the text-to-image reranker.
//! * [`text2image`]: DALL-E-style text to image (GPT-2 prior over VQ-VAE codes, guidance).
//! * [`judge`]: the shapes judge, a CNN reading each grid cell's object (prompt fidelity).
//! * [`image_eval`]: the prompt-fidelity benchmark of text-to-image models (judges, prompt
//!   sets, scoring, reports).
//! * [`folder`]: save and load as `config.json` + `model.safetensors`.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use kiln_models::mlp::{Mlp, MlpConfig};
//! use kiln_nn::{init::SeededVarMap, Mode};
//! let vars = SeededVarMap::new(0);
//! let cfg = MlpConfig { input_dim: 4, hidden: vec![8], output_dim: 3, ..Default::default() };
//! let mlp = Mlp::new(cfg, vars.var_builder()).unwrap();
//! let x = Tensor::zeros((5, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
//! assert_eq!(mlp.forward(&x, &Mode::eval()).unwrap().dims(), &[5, 3]);
//! ```
#![warn(missing_docs)]

pub mod clip;
pub mod cnn;
pub mod folder;
pub mod gpt2;
pub mod image_eval;
pub mod judge;
pub mod mlp;
pub mod rnn;
pub mod text2image;
pub mod tokenizer;
pub mod tokenizer_train;
pub mod vqvae;
