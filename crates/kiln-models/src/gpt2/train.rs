//! Training GPT-2 with kiln-train. The model's [`kiln_nn::TrainStep`] (a batch of input ids
//! (B, T) and target ids (B, T) → mean next-token cross-entropy; evaluation sums the loss over
//! tokens) lives beside its forward pass in [`super::model`]; this file makes a model
//! trainable: a fresh one from a seed ([`fresh`]) or a pretrained Hugging Face folder whose
//! tensors become trainable variables ([`from_folder`], for fine-tuning). [`perplexity`] is
//! exp(mean loss). The trained model is written back as a Hugging Face folder by
//! [`super::save::save_folder`].
//!
//! `kiln train gpt --text FILE [--init-from DIR]` drives these.

use std::path::Path;

use kiln_nn::init::SeededVarMap;
use kiln_nn::{Error, Result};

use super::load::{load_config, load_tensors, load_tokenizer};
use super::{Gpt2, Gpt2Config};
use crate::tokenizer::Tokenizer;

/// A new GPT-2 of `cfg` with Hugging Face's initialisation drawn from `seed`, and the variable
/// map the optimizer updates.
pub fn fresh(cfg: &Gpt2Config, seed: u64) -> Result<(Gpt2, SeededVarMap)> {
    cfg.validate()?;
    let vars = SeededVarMap::new(seed);
    let model = Gpt2::new(cfg, vars.var_builder())?;
    Ok((model, vars))
}

/// The GPT-2 of the Hugging Face folder `dir` (config.json, model.safetensors, tokenizer),
/// with every tensor a trainable variable.
pub fn from_folder(dir: &Path) -> Result<(Gpt2, Gpt2Config, Tokenizer, SeededVarMap)> {
    if !dir.is_dir() {
        return Err(kiln_core::Error::folder(dir, "is not a folder").into());
    }
    let cfg = load_config(dir)?;
    let tokenizer = load_tokenizer(dir)?;
    let tensors = load_tensors(dir, &cfg)?;
    let (model, vars) = fresh(&cfg, 0)?;
    {
        let data = vars
            .var_map()
            .data()
            .lock()
            .map_err(|_| Error::shape("variable map lock poisoned"))?;
        for (name, var) in data.iter() {
            let t = tensors.get(name).ok_or_else(|| {
                Error::from(kiln_core::Error::folder(
                    dir,
                    format!("the weights lack {name}"),
                ))
            })?;
            var.set(t)?;
        }
    }
    Ok((model, cfg, tokenizer, vars))
}

/// Perplexity of a mean cross-entropy (nats per token): exp(loss).
pub fn perplexity(loss: f64) -> f64 {
    loss.exp()
}
