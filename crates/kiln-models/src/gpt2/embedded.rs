//! kiln's default GPT, embedded in the binary: a small character-level GPT-2 trained by kiln on
//! the complete works of Shakespeare (public domain; text from the Open Shakespeare project,
//! Open Knowledge Foundation), as described in `assets/default-gpt/README.md` with the command
//! that made it and its validation loss. `kiln generate text` uses it when no `--model` is
//! given. The files are the Hugging Face GPT-2 folder `kiln train gpt` wrote.

use std::collections::HashMap;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use kiln_nn::{Error, Result};

use super::{Gpt2, Gpt2Config};
use crate::tokenizer::Tokenizer;

/// The embedded folder's `config.json`.
pub const CONFIG_JSON: &str = include_str!("../../assets/default-gpt/config.json");
/// The embedded folder's `model.safetensors`.
pub const MODEL_SAFETENSORS: &[u8] = include_bytes!("../../assets/default-gpt/model.safetensors");
/// The embedded folder's `tokenizer.json` (one token per character).
pub const TOKENIZER_JSON: &[u8] = include_bytes!("../../assets/default-gpt/tokenizer.json");

/// Every file of the embedded folder, by name (to write it out as a folder).
pub const FILES: &[(&str, &[u8])] = &[
    ("config.json", CONFIG_JSON.as_bytes()),
    ("model.safetensors", MODEL_SAFETENSORS),
    ("tokenizer.json", TOKENIZER_JSON),
    (
        "tokenizer_config.json",
        include_bytes!("../../assets/default-gpt/tokenizer_config.json"),
    ),
    (
        "generation_config.json",
        include_bytes!("../../assets/default-gpt/generation_config.json"),
    ),
];

/// The embedded model, its config and its tokenizer.
pub fn load() -> Result<(Gpt2, Gpt2Config, Tokenizer)> {
    let cfg: Gpt2Config = serde_json::from_str(CONFIG_JSON)
        .map_err(|e| Error::shape(format!("embedded default GPT config.json: {e}")))?;
    let tensors: HashMap<_, _> =
        candle_core::safetensors::load_buffer(MODEL_SAFETENSORS, &Device::Cpu)?
            .into_iter()
            .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = Gpt2::new(&cfg, vb)?;
    let tokenizer = Tokenizer::from_bytes(TOKENIZER_JSON)?;
    Ok((model, cfg, tokenizer))
}

/// Write the embedded folder's files into `dir` (created if missing), so that anything that
/// reads a Hugging Face folder can read the default model.
pub fn write_folder(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for (name, bytes) in FILES {
        kiln_core::folder::write_atomic(&dir.join(name), bytes)?;
    }
    Ok(())
}
