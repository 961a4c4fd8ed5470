//! Read a Hugging Face GPT-2 folder: `config.json`, `model.safetensors` (tensor names with or
//! without the `transformer.` prefix; any float dtype, converted to f32) or shards listed in
//! `model.safetensors.index.json`, `generation_config.json` (optional), and the tokenizer from
//! `tokenizer.json` or `vocab.json` + `merges.txt`.
//!
//! Every tensor the config implies is checked before the model is built: a missing or
//! misshapen one is an error naming the file, the tensor, the expected and the found shape.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use kiln_nn::{Error, Result};

use super::config::Gpt2Config;
use super::generate::GenerationConfig;
use super::model::Gpt2;
use crate::tokenizer::Tokenizer;

fn folder_err(path: &Path, message: impl Into<String>) -> Error {
    kiln_core::Error::folder(path, message).into()
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// True when `dir` looks like a Hugging Face GPT-2 folder: its `config.json` has
/// `"model_type": "gpt2"`, or no `model_type` but GPT-2's `n_embd` and `n_layer` keys.
pub fn is_hf_gpt2(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    match v.get("model_type").and_then(|m| m.as_str()) {
        Some(t) => t == "gpt2",
        None => v.get("n_embd").is_some() && v.get("n_layer").is_some(),
    }
}

/// Read and check `dir/config.json`.
pub fn load_config(dir: &Path) -> Result<Gpt2Config> {
    let path = dir.join("config.json");
    let text = read_text(&path)?;
    let raw: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| folder_err(&path, format!("not valid JSON: {e}")))?;
    if raw.get("model_type").is_none() && raw.get("n_embd").is_none() {
        return Err(folder_err(
            &path,
            "not a GPT-2 config: expected \"model_type\": \"gpt2\" and keys n_embd, n_layer, n_head",
        ));
    }
    let cfg: Gpt2Config = serde_json::from_value(raw)
        .map_err(|e| folder_err(&path, format!("not a GPT-2 config: {e}")))?;
    cfg.validate()
        .map_err(|e| folder_err(&path, e.to_string()))?;
    Ok(cfg)
}

/// Every tensor name (without prefix) and shape a model of `cfg` needs.
pub fn expected_tensors(cfg: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let (c, f, v) = (cfg.n_embd, cfg.inner(), cfg.vocab_size);
    let mut out = vec![
        ("wte.weight".to_string(), vec![v, c]),
        ("wpe.weight".to_string(), vec![cfg.n_positions, c]),
    ];
    for i in 0..cfg.n_layer {
        let p = format!("h.{i}");
        for (name, shape) in [
            ("ln_1.weight", vec![c]),
            ("ln_1.bias", vec![c]),
            ("attn.c_attn.weight", vec![c, 3 * c]),
            ("attn.c_attn.bias", vec![3 * c]),
            ("attn.c_proj.weight", vec![c, c]),
            ("attn.c_proj.bias", vec![c]),
            ("ln_2.weight", vec![c]),
            ("ln_2.bias", vec![c]),
            ("mlp.c_fc.weight", vec![c, f]),
            ("mlp.c_fc.bias", vec![f]),
            ("mlp.c_proj.weight", vec![f, c]),
            ("mlp.c_proj.bias", vec![c]),
        ] {
            out.push((format!("{p}.{name}"), shape));
        }
    }
    out.push(("ln_f.weight".to_string(), vec![c]));
    out.push(("ln_f.bias".to_string(), vec![c]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, c]));
    }
    out
}

/// The safetensors files of `dir`: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`. A folder with only PyTorch pickles gets an error saying how
/// to convert it.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let v: serde_json::Value = serde_json::from_str(&read_text(&index)?)
            .map_err(|e| folder_err(&index, format!("not valid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| folder_err(&index, "expected a \"weight_map\" object"))?;
        let mut files: Vec<String> = Vec::new();
        for (name, f) in map {
            let f = f.as_str().ok_or_else(|| {
                folder_err(&index, format!("weight_map[{name:?}] is not a file name"))
            })?;
            if !files.iter().any(|x| x == f) {
                files.push(f.to_string());
            }
        }
        if files.is_empty() {
            return Err(folder_err(&index, "weight_map is empty"));
        }
        let files: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(folder_err(
                &index,
                format!("names shard {} which does not exist", missing.display()),
            ));
        }
        return Ok(files);
    }
    if dir.join("pytorch_model.bin").is_file() || dir.join("pytorch_model.bin.index.json").is_file()
    {
        return Err(folder_err(
            dir,
            "holds PyTorch weights (pytorch_model.bin) but no model.safetensors; kiln reads \
             safetensors only. Convert once with: python -c \"from transformers import \
             GPT2LMHeadModel as M; M.from_pretrained('DIR').save_pretrained('DIR', \
             safe_serialization=True)\"",
        ));
    }
    Err(folder_err(
        dir,
        "expected model.safetensors or model.safetensors.index.json, found neither",
    ))
}

/// One tensor's entry in a safetensors header.
#[derive(serde::Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// The tensors listed in the header of the safetensors file `path` (name → entry) and the
/// byte offset where their data starts.
fn read_header(file: &mut std::fs::File, path: &Path) -> Result<(HashMap<String, Entry>, u64)> {
    use std::io::Read as _;
    let bad = |m: String| folder_err(path, format!("cannot read safetensors: {m}"));
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_len = file.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| bad(format!("no header ({e})")))?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 || 8 + n > file_len {
        return Err(bad(format!(
            "header of {n} bytes in a file of {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(io)?;
    let raw: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let mut out = HashMap::new();
    for (name, v) in raw {
        if name == "__metadata__" {
            continue;
        }
        let e: Entry =
            serde_json::from_value(v).map_err(|e| bad(format!("header entry {name:?}: {e}")))?;
        let [a, b] = e.data_offsets;
        if a > b || 8 + n + b as u64 > file_len {
            return Err(bad(format!(
                "tensor {name} spans bytes {a}..{b}, past the end of the file"
            )));
        }
        out.insert(name, e);
    }
    Ok((out, 8 + n))
}

/// Read one tensor's bytes straight into an f32 buffer (converting f16, bf16, f64), a chunk
/// at a time: no memory map and no second full-size copy.
fn read_f32(
    file: &mut std::fs::File,
    path: &Path,
    name: &str,
    e: &Entry,
    data_start: u64,
) -> Result<Vec<f32>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let count: usize = e.shape.iter().product();
    let width = match e.dtype.as_str() {
        "F32" => 4,
        "F16" | "BF16" => 2,
        "F64" => 8,
        other => {
            return Err(folder_err(
                path,
                format!("tensor {name} has dtype {other}, expected a float type"),
            ))
        }
    };
    let [a, b] = e.data_offsets;
    if b - a != count * width {
        return Err(folder_err(
            path,
            format!(
                "tensor {name}: {} bytes of data for shape {:?} in {}",
                b - a,
                e.shape,
                e.dtype
            ),
        ));
    }
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    file.seek(SeekFrom::Start(data_start + a as u64))
        .map_err(io)?;
    let mut out = Vec::with_capacity(count);
    let mut buf = vec![0u8; (1 << 20) * width];
    let mut left = count;
    while left > 0 {
        let n = left.min(1 << 20);
        let chunk = &mut buf[..n * width];
        file.read_exact(chunk).map_err(io)?;
        match e.dtype.as_str() {
            "F32" => out.extend(
                chunk
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            "BF16" => out.extend(
                chunk
                    .chunks_exact(2)
                    .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)),
            ),
            "F16" => out.extend(
                chunk
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
            ),
            _ => out.extend(chunk.chunks_exact(8).map(|c| {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            })),
        }
        left -= n;
    }
    Ok(out)
}

/// IEEE half → f32.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // subnormal: man · 2^-24
            let v = man as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Read the weights of `dir` for `cfg`: names without `transformer.`, f32, every expected
/// tensor present with its expected shape. Each tensor is read from the file straight into
/// its own f32 buffer (peak memory: the weights plus a few MiB).
pub fn load_tensors(dir: &Path, cfg: &Gpt2Config) -> Result<HashMap<String, Tensor>> {
    let files = weight_files(dir)?;
    // name without prefix → (file index, entry)
    let mut all: HashMap<String, (usize, Entry)> = HashMap::new();
    let mut handles = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        let mut file = std::fs::File::open(f).map_err(|source| Error::Io {
            path: f.clone(),
            source,
        })?;
        let (entries, start) = read_header(&mut file, f)?;
        for (name, e) in entries {
            let short = name
                .strip_prefix("transformer.")
                .unwrap_or(&name)
                .to_string();
            all.insert(short, (fi, e));
        }
        handles.push((file, start));
    }
    let what = if files.len() == 1 {
        files[0].display().to_string()
    } else {
        format!("{} (sharded)", dir.display())
    };
    let mut out = HashMap::new();
    for (name, shape) in expected_tensors(cfg) {
        let Some((fi, e)) = all.remove(&name) else {
            return Err(folder_err(
                Path::new(&what),
                format!(
                    "missing tensor {name} (or transformer.{name}), expected shape {shape:?} \
                     for config n_layer={} n_embd={} vocab_size={}",
                    cfg.n_layer, cfg.n_embd, cfg.vocab_size
                ),
            ));
        };
        let file = &files[fi];
        if e.shape != shape {
            return Err(folder_err(
                file,
                format!(
                    "tensor {name} has shape {:?}, expected {shape:?} from config.json",
                    e.shape
                ),
            ));
        }
        let (handle, start) = &mut handles[fi];
        let values = read_f32(handle, file, &name, &e, *start)?;
        out.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    Ok(out)
}

/// Read the tokenizer of `dir`: `tokenizer.json`, else `vocab.json` + `merges.txt`.
pub fn load_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        return Tokenizer::from_file(&json);
    }
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    if vocab.is_file() && merges.is_file() {
        return Tokenizer::from_vocab_merges(&vocab, &merges);
    }
    Err(folder_err(
        dir,
        "expected tokenizer.json or vocab.json + merges.txt, found neither",
    ))
}

/// Generation defaults of a folder: GPT-2's EOS from `config.json`, then whatever
/// `generation_config.json` sets.
pub fn load_generation_config(dir: &Path, cfg: &Gpt2Config) -> Result<GenerationConfig> {
    let mut g = GenerationConfig {
        eos_token_id: cfg.eos_token_id.into_iter().collect(),
        ..Default::default()
    };
    let path = dir.join("generation_config.json");
    if path.is_file() {
        g.merge_json(&read_text(&path)?)
            .map_err(|e| folder_err(&path, e.to_string()))?;
    }
    Ok(g)
}

/// Load a Hugging Face GPT-2 folder: the model, its config, its tokenizer and its generation
/// defaults. The tokenizer's vocabulary must fit the model's.
pub fn load_folder(dir: &Path) -> Result<(Gpt2, Gpt2Config, Tokenizer, GenerationConfig)> {
    if !dir.is_dir() {
        return Err(folder_err(dir, "is not a folder"));
    }
    let cfg = load_config(dir)?;
    let tokenizer = load_tokenizer(dir)?;
    if tokenizer.vocab_size() > cfg.vocab_size {
        return Err(folder_err(
            dir,
            format!(
                "the tokenizer has {} tokens but config.json vocab_size = {}",
                tokenizer.vocab_size(),
                cfg.vocab_size
            ),
        ));
    }
    let tensors = load_tensors(dir, &cfg)?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = Gpt2::new(&cfg, vb)?;
    let generation = load_generation_config(dir, &cfg)?;
    Ok((model, cfg, tokenizer, generation))
}

/// [`load_folder`], then the weight matrices packed in `dtype` for inference
/// ([`Gpt2::with_weight_dtype`]; f32 leaves the model as loaded).
pub fn load_folder_with_dtype(
    dir: &Path,
    dtype: super::quant::WeightDtype,
) -> Result<(Gpt2, Gpt2Config, Tokenizer, GenerationConfig)> {
    let (model, cfg, tok, generation) = load_folder(dir)?;
    Ok((model.with_weight_dtype(dtype)?, cfg, tok, generation))
}
