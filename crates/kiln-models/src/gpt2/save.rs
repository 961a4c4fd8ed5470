//! Write a trained GPT-2 as a Hugging Face folder that `transformers` and kiln both load:
//!
//! ```text
//! config.json             Gpt2Config with model_type "gpt2" and architectures GPT2LMHeadModel
//! model.safetensors       f32 tensors with HF names without `transformer.` (wte.weight,
//!                         h.0.attn.c_attn.weight in Conv1D (in, out) layout, ...); the LM head
//!                         is tied to wte, as in GPT-2
//! tokenizer.json          the tokenizer, in the `tokenizers` format
//! tokenizer_config.json   tokenizer_class PreTrainedTokenizerFast (what AutoTokenizer builds)
//! generation_config.json  bos/eos token ids, when the vocabulary has them
//! ```
//! Each file is written atomically (a temporary file renamed into place) and `config.json`
//! last, so a folder with a `config.json` is complete.

use std::path::Path;

use candle_core::DType;
use candle_nn::VarMap;
use kiln_core::folder::{write_atomic, Tensors};
use kiln_nn::{Error, Result};
use serde_json::json;

use super::Gpt2Config;
use crate::tokenizer::Tokenizer;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn to_json(v: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| Error::shape(format!("serialising: {e}")))
}

/// Save the model of `cfg` whose weights are `vars`, with `tokenizer`, into the folder `dir`
/// (created if missing; files already there are replaced).
pub fn save_folder(
    dir: &Path,
    cfg: &Gpt2Config,
    vars: &VarMap,
    tokenizer: &Tokenizer,
) -> Result<()> {
    cfg.validate()?;
    if tokenizer.vocab_size() > cfg.vocab_size {
        return Err(Error::shape(format!(
            "the tokenizer has {} tokens but the model's vocab_size is {}",
            tokenizer.vocab_size(),
            cfg.vocab_size
        )));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;

    let mut tensors = Tensors::new();
    {
        let data = vars
            .data()
            .lock()
            .map_err(|_| Error::shape("variable map lock poisoned"))?;
        for (name, var) in data.iter() {
            let t = var.as_tensor();
            let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            tensors.insert_f32(name, t.dims(), values);
        }
    }
    write_atomic(&dir.join("model.safetensors"), &tensors.to_bytes()?)?;

    write_atomic(&dir.join("tokenizer.json"), tokenizer.to_json()?.as_bytes())?;
    let mut tok_config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": cfg.n_positions,
        "clean_up_tokenization_spaces": false,
    });
    if tokenizer.token_to_id(crate::tokenizer::ENDOFTEXT).is_some() {
        for key in ["bos_token", "eos_token", "unk_token"] {
            tok_config[key] = json!(crate::tokenizer::ENDOFTEXT);
        }
    }
    write_atomic(&dir.join("tokenizer_config.json"), &to_json(&tok_config)?)?;

    let mut generation = json!({ "_from_model_config": true });
    if let Some(id) = cfg.bos_token_id {
        generation["bos_token_id"] = json!(id);
    }
    if let Some(id) = cfg.eos_token_id {
        generation["eos_token_id"] = json!(id);
    }
    write_atomic(&dir.join("generation_config.json"), &to_json(&generation)?)?;

    let mut config = serde_json::to_value(cfg)
        .map_err(|e| Error::shape(format!("serialising the config: {e}")))?;
    config["model_type"] = json!("gpt2");
    if cfg.architectures.is_none() {
        config["architectures"] = json!(["GPT2LMHeadModel"]);
    }
    config["torch_dtype"] = json!("float32");
    write_atomic(&dir.join("config.json"), &to_json(&config)?)?;
    Ok(())
}
