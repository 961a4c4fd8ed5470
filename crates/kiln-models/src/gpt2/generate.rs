//! Text generation with transformers' meanings: greedy (`do_sample = false`, exactly
//! transformers' greedy search) or sampling with repetition penalty → temperature → top-k →
//! top-p, in that order; EOS and stop strings end a sequence; several prompts run as one
//! left-padded batch with an attention mask; every new token goes to a callback as it is made.
//!
//! Run it: `kiln generate text --model DIR --prompt "Once upon a time" --seed 1`.

use std::time::Instant;

use candle_core::{Device, IndexOp, Tensor};
use kiln_nn::{Error, Result};
use rand::Rng as _;

use super::model::Gpt2;
use crate::tokenizer::Tokenizer;

/// How to continue a prompt. Field names and meanings are transformers' `GenerationConfig`'s
/// (plus `seed`); [`GenerationConfig::merge_json`] reads a `generation_config.json` into it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// Tokens to generate per sequence, at most (default 50).
    pub max_new_tokens: usize,
    /// Sample (true) or take the most likely token (false, greedy) (default false).
    pub do_sample: bool,
    /// Divide the logits by this before sampling; > 0 (default 1).
    pub temperature: f64,
    /// Sample only among the k most likely tokens (ties at the k-th value kept); `None` keeps
    /// all (default 50, transformers' default).
    pub top_k: Option<usize>,
    /// Sample only from the smallest set of most likely tokens whose probability reaches top_p,
    /// in (0, 1] (default 1: off).
    pub top_p: f64,
    /// Penalise tokens already in the sequence (prompt or generated): a positive logit is
    /// divided by it, a negative one multiplied; ≥ 1 in practice, > 0 allowed (default 1: off).
    /// Padding is not counted.
    pub repetition_penalty: f64,
    /// Sequences per prompt (rows `i·n .. i·n + n` continue prompt i); more than one needs
    /// sampling (default 1).
    pub num_return_sequences: usize,
    /// Tokens that end a sequence (kept in its tokens, left out of its text) (default none;
    /// loading a folder sets GPT-2's 50256).
    pub eos_token_id: Vec<u32>,
    /// Token that pads prompts on the left and fills finished rows (default: the first EOS,
    /// else 0).
    pub pad_token_id: Option<u32>,
    /// Strings that end a sequence once its generated text contains one; the text is cut right
    /// after it (default none).
    pub stop_strings: Vec<String>,
    /// Seed of the sampler (default 0).
    pub seed: u64,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 50,
            do_sample: false,
            temperature: 1.0,
            top_k: Some(50),
            top_p: 1.0,
            repetition_penalty: 1.0,
            num_return_sequences: 1,
            eos_token_id: Vec::new(),
            pad_token_id: None,
            stop_strings: Vec::new(),
            seed: 0,
        }
    }
}

/// `generation_config.json` as transformers writes it: every field optional, some either a
/// number or a list.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct HfGenerationConfig {
    max_new_tokens: Option<usize>,
    max_length: Option<usize>,
    do_sample: Option<bool>,
    temperature: Option<f64>,
    top_k: Option<usize>,
    top_p: Option<f64>,
    repetition_penalty: Option<f64>,
    num_return_sequences: Option<usize>,
    eos_token_id: Option<OneOrMany<u32>>,
    pad_token_id: Option<u32>,
    stop_strings: Option<OneOrMany<String>>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(v) => v,
        }
    }
}

impl GenerationConfig {
    /// Overwrite the fields that a transformers `generation_config.json` (`text`) sets.
    /// `max_length` (prompt + new tokens) is kept only as `max_new_tokens` when the latter is
    /// absent, counted from `prompt_len`; `top_k = 0` means no top-k.
    pub fn merge_json(&mut self, text: &str) -> Result<()> {
        let hf: HfGenerationConfig = serde_json::from_str(text)
            .map_err(|e| Error::shape(format!("generation_config.json: {e}")))?;
        if let Some(n) = hf.max_new_tokens {
            self.max_new_tokens = n;
        } else if let Some(n) = hf.max_length {
            self.max_new_tokens = n;
        }
        if let Some(v) = hf.do_sample {
            self.do_sample = v;
        }
        if let Some(v) = hf.temperature {
            self.temperature = v;
        }
        if let Some(v) = hf.top_k {
            self.top_k = (v > 0).then_some(v);
        }
        if let Some(v) = hf.top_p {
            self.top_p = v;
        }
        if let Some(v) = hf.repetition_penalty {
            self.repetition_penalty = v;
        }
        if let Some(v) = hf.num_return_sequences {
            self.num_return_sequences = v;
        }
        if let Some(v) = hf.eos_token_id {
            self.eos_token_id = v.into_vec();
        }
        if let Some(v) = hf.pad_token_id {
            self.pad_token_id = Some(v);
        }
        if let Some(v) = hf.stop_strings {
            self.stop_strings = v.into_vec();
        }
        Ok(())
    }

    /// Check every option, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.do_sample && !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::param(
                "temperature",
                self.temperature,
                "a finite number > 0 when sampling (use greedy decoding for 0)",
            ));
        }
        if self.top_k == Some(0) {
            return Err(Error::param("top_k", 0, "≥ 1 (or none)"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::param("top_p", self.top_p, "in (0, 1]"));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(Error::param(
                "repetition_penalty",
                self.repetition_penalty,
                "a finite number > 0",
            ));
        }
        if self.num_return_sequences == 0 {
            return Err(Error::param("num_return_sequences", 0, "≥ 1"));
        }
        if self.num_return_sequences > 1 && !self.do_sample {
            return Err(Error::param(
                "num_return_sequences",
                self.num_return_sequences,
                "1 with greedy decoding (greedy rows would be identical); sample for more",
            ));
        }
        if self.stop_strings.iter().any(|s| s.is_empty()) {
            return Err(Error::param("stop_strings", "\"\"", "non-empty strings"));
        }
        Ok(())
    }

    fn pad(&self) -> u32 {
        self.pad_token_id
            .or(self.eos_token_id.first().copied())
            .unwrap_or(0)
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It produced an EOS token.
    Eos,
    /// Its text contains a stop string.
    StopString,
    /// It reached `max_new_tokens`.
    Length,
}

/// What [`generate`] returns, one entry per row (prompt-major: row `i·n + j` is the j-th
/// sequence of prompt i).
#[derive(Debug, Clone)]
pub struct GenerationOutput {
    /// New tokens of each row (an EOS that ended a row is its last token).
    pub tokens: Vec<Vec<u32>>,
    /// Text of each row's new tokens (EOS left out, cut after a stop string); empty strings
    /// when no tokenizer was given.
    pub texts: Vec<String>,
    /// Why each row ended.
    pub finish: Vec<FinishReason>,
    /// Prompt tokens run in the prefill (real tokens over all rows, padding not counted).
    pub prompt_tokens: usize,
    /// Seconds of the prefill pass (prompts → first logits).
    pub prefill_secs: f64,
    /// Decoding steps after the prefill (each one new token for every unfinished row).
    pub decode_steps: usize,
    /// Seconds of those steps.
    pub decode_secs: f64,
}

impl GenerationOutput {
    /// New tokens over all rows.
    pub fn new_tokens(&self) -> usize {
        self.tokens.iter().map(|t| t.len()).sum()
    }
}

/// Continue each prompt (token ids, none empty) with `model`.
///
/// `tokenizer` decodes the texts and is needed for stop strings. `on_token(row, id)` is called
/// for every new token as soon as it is chosen (streaming); an error from it stops generation.
pub fn generate(
    model: &Gpt2,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    tokenizer: Option<&Tokenizer>,
    on_token: &mut dyn FnMut(usize, u32) -> Result<()>,
) -> Result<GenerationOutput> {
    cfg.validate()?;
    let mcfg = model.config();
    if prompts.is_empty() {
        return Err(Error::param("prompts", "none", "at least one prompt"));
    }
    if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
        return Err(Error::param(
            "prompt",
            format!("#{i} is empty"),
            "at least one token",
        ));
    }
    if !cfg.stop_strings.is_empty() && tokenizer.is_none() {
        return Err(Error::param(
            "stop_strings",
            format!("{:?}", cfg.stop_strings),
            "a tokenizer to decode with (none given)",
        ));
    }
    let n = cfg.num_return_sequences;
    let rows: Vec<&Vec<u32>> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p, n))
        .collect();
    let b = rows.len();
    let longest = rows.iter().map(|p| p.len()).max().unwrap_or(0);
    if longest + cfg.max_new_tokens > mcfg.n_positions {
        return Err(Error::param(
            "max_new_tokens",
            cfg.max_new_tokens,
            &format!(
                "at most {} (n_positions = {} minus the longest prompt, {longest} tokens)",
                mcfg.n_positions.saturating_sub(longest),
                mcfg.n_positions
            ),
        ));
    }
    let pad = cfg.pad();
    let padded = rows.iter().any(|p| p.len() != longest);
    // Left padding: (B, L) ids and mask.
    let mut ids = Vec::with_capacity(b * longest);
    let mut mask: Vec<Vec<u32>> = Vec::with_capacity(b);
    for p in &rows {
        let gap = longest - p.len();
        ids.extend(std::iter::repeat_n(pad, gap));
        ids.extend_from_slice(p);
        let mut m = vec![0u32; gap];
        m.extend(std::iter::repeat_n(1u32, p.len()));
        mask.push(m);
    }
    let dev = Device::Cpu;
    let mut seen: Vec<Vec<bool>> = rows
        .iter()
        .map(|p| {
            let mut s = vec![false; mcfg.vocab_size];
            for &i in p.iter() {
                if let Some(x) = s.get_mut(i as usize) {
                    *x = true;
                }
            }
            s
        })
        .collect();
    let mut rng = kiln_core::rng(cfg.seed);
    let mut cache = model.new_cache(longest + cfg.max_new_tokens);
    let mask_tensor = |mask: &Vec<Vec<u32>>| -> Result<Option<Tensor>> {
        if !padded {
            return Ok(None);
        }
        let s = mask[0].len();
        let flat: Vec<u32> = mask.iter().flatten().copied().collect();
        Ok(Some(Tensor::from_vec(flat, (b, s), &dev)?))
    };

    let start = Instant::now();
    let input = Tensor::from_vec(ids, (b, longest), &dev)?;
    let m = mask_tensor(&mask)?;
    let mut last = last_logits(model, &input, &mut cache, m.as_ref())?;
    let prefill_secs = start.elapsed().as_secs_f64();

    let mut out = vec![Vec::new(); b];
    let mut finish: Vec<Option<FinishReason>> = vec![None; b];
    let mut texts = vec![String::new(); b];
    let decode_start = Instant::now();
    let mut decode_steps = 0;
    for step in 0..cfg.max_new_tokens {
        let mut next = Vec::with_capacity(b);
        for r in 0..b {
            if finish[r].is_some() {
                next.push(pad);
                continue;
            }
            let mut logits = last[r].clone();
            let tok = choose(&mut logits, &seen[r], cfg, &mut rng);
            if let Some(s) = seen[r].get_mut(tok as usize) {
                *s = true;
            }
            out[r].push(tok);
            on_token(r, tok)?;
            if cfg.eos_token_id.contains(&tok) {
                finish[r] = Some(FinishReason::Eos);
            } else if let Some(t) = tokenizer.filter(|_| !cfg.stop_strings.is_empty()) {
                let text = t.decode(&out[r])?;
                if let Some(end) = first_stop(&text, &cfg.stop_strings) {
                    texts[r] = text[..end].to_string();
                    finish[r] = Some(FinishReason::StopString);
                }
            }
            next.push(tok);
        }
        if finish.iter().all(|f| f.is_some()) || step + 1 == cfg.max_new_tokens {
            break;
        }
        for m in mask.iter_mut() {
            m.push(1);
        }
        let input = Tensor::from_vec(next, (b, 1), &dev)?;
        let m = mask_tensor(&mask)?;
        last = last_logits(model, &input, &mut cache, m.as_ref())?;
        decode_steps += 1;
    }
    let decode_secs = decode_start.elapsed().as_secs_f64();
    let finish: Vec<FinishReason> = finish
        .into_iter()
        .map(|f| f.unwrap_or(FinishReason::Length))
        .collect();
    if let Some(t) = tokenizer {
        for r in 0..b {
            if finish[r] != FinishReason::StopString {
                let ids: Vec<u32> = out[r]
                    .iter()
                    .copied()
                    .filter(|i| !cfg.eos_token_id.contains(i))
                    .collect();
                texts[r] = t.decode(&ids)?;
            }
        }
    }
    Ok(GenerationOutput {
        tokens: out,
        texts,
        finish,
        prompt_tokens: rows.iter().map(|p| p.len()).sum(),
        prefill_secs,
        decode_steps,
        decode_secs,
    })
}

/// Byte offset just after the earliest stop string in `text`.
fn first_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter_map(|s| text.find(s.as_str()).map(|i| i + s.len()))
        .min()
}

/// Run `input` (B, T) through the model and return each row's last-position logits (V).
fn last_logits(
    model: &Gpt2,
    input: &Tensor,
    cache: &mut super::model::KvCache,
    mask: Option<&Tensor>,
) -> Result<Vec<Vec<f32>>> {
    let hidden = model.hidden(input, Some(cache), mask, &kiln_nn::Mode::eval())?; // (B, T, C)
    let t = hidden.dim(1)?;
    let last = hidden.i((.., t - 1..t, ..))?.contiguous()?; // (B, 1, C)
    let logits = model.logits(&last)?.squeeze(1)?; // (B, V)
    Ok(logits.to_vec2::<f32>()?)
}

/// Pick the next token from one row's `logits` (modified in place): repetition penalty, then
/// greedy argmax, or temperature → top-k → top-p → a draw from the softmax.
fn choose(
    logits: &mut [f32],
    seen: &[bool],
    cfg: &GenerationConfig,
    rng: &mut kiln_core::Rng,
) -> u32 {
    if cfg.repetition_penalty != 1.0 {
        let p = cfg.repetition_penalty as f32;
        for (l, _) in logits.iter_mut().zip(seen).filter(|(_, &s)| s) {
            *l = if *l < 0.0 { *l * p } else { *l / p };
        }
    }
    if !cfg.do_sample {
        return argmax(logits);
    }
    let t = cfg.temperature as f32;
    logits.iter_mut().for_each(|l| *l /= t);
    if let Some(k) = cfg.top_k.filter(|&k| k < logits.len()) {
        let mut sorted = logits.to_vec();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        let kth = sorted[k - 1];
        logits
            .iter_mut()
            .filter(|l| **l < kth)
            .for_each(|l| *l = f32::NEG_INFINITY);
    }
    if cfg.top_p < 1.0 {
        // transformers: sort ascending, drop tokens whose cumulative probability ≤ 1 - top_p,
        // always keep the most likely one.
        let probs = softmax(logits);
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]));
        let mut cum = 0f64;
        let last = order.len() - 1;
        for (pos, &i) in order.iter().enumerate() {
            cum += probs[i];
            if cum <= 1.0 - cfg.top_p && pos != last {
                logits[i] = f32::NEG_INFINITY;
            }
        }
    }
    let probs = softmax(logits);
    let mut u = rng.random::<f64>();
    for (i, p) in probs.iter().enumerate() {
        if u < *p {
            return i as u32;
        }
        u -= p;
    }
    argmax(logits)
}

/// First index of the largest value (`torch.argmax`); NaN never wins.
fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] || xs[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// Softmax in f64 (masked −∞ entries get 0).
fn softmax(xs: &[f32]) -> Vec<f64> {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = xs.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling() -> GenerationConfig {
        GenerationConfig {
            do_sample: true,
            top_k: None,
            ..Default::default()
        }
    }

    #[test]
    fn greedy_takes_first_maximum() {
        let mut l = vec![0.0, 2.0, 2.0, -1.0];
        let cfg = GenerationConfig::default();
        assert_eq!(choose(&mut l, &[false; 4], &cfg, &mut kiln_core::rng(0)), 1);
    }

    #[test]
    fn repetition_penalty_divides_positive_multiplies_negative() {
        let mut l = vec![2.0, -1.0, 1.5];
        let cfg = GenerationConfig {
            repetition_penalty: 2.0,
            ..Default::default()
        };
        let t = choose(&mut l, &[true, true, false], &cfg, &mut kiln_core::rng(0));
        assert_eq!(l, vec![1.0, -2.0, 1.5]);
        assert_eq!(t, 2);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_nucleus() {
        let mut rng = kiln_core::rng(3);
        let cfg = GenerationConfig {
            top_k: Some(1),
            ..sampling()
        };
        for _ in 0..20 {
            let mut l = vec![0.1, 0.5, 0.3];
            assert_eq!(choose(&mut l, &[false; 3], &cfg, &mut rng), 1);
        }
        // probs ≈ [0.643, 0.237, 0.087, 0.032]: top_p 0.7 keeps the first two only.
        let cfg = GenerationConfig {
            top_p: 0.7,
            ..sampling()
        };
        let mut hits = [0usize; 4];
        for _ in 0..400 {
            let mut l = vec![3.0, 2.0, 1.0, 0.0];
            hits[choose(&mut l, &[false; 4], &cfg, &mut rng) as usize] += 1;
        }
        assert_eq!(hits[2] + hits[3], 0, "{hits:?}");
        assert!(hits[0] > 200 && hits[1] > 50, "{hits:?}");
    }

    #[test]
    fn sampling_follows_the_softmax() {
        let mut rng = kiln_core::rng(7);
        let cfg = sampling();
        let mut hits = [0usize; 2];
        for _ in 0..4000 {
            let mut l = vec![0.0, (3f32).ln()]; // probs 1/4, 3/4
            hits[choose(&mut l, &[false; 2], &cfg, &mut rng) as usize] += 1;
        }
        let p1 = hits[1] as f64 / 4000.0;
        assert!((p1 - 0.75).abs() < 0.03, "{p1}");
    }

    #[test]
    fn generation_config_json_and_validation() {
        let mut g = GenerationConfig::default();
        g.merge_json(r#"{"bos_token_id": 50256, "eos_token_id": [1, 2], "top_k": 0, "do_sample": true, "temperature": 0.7, "stop_strings": "\n"}"#)
            .unwrap();
        assert_eq!(g.eos_token_id, vec![1, 2]);
        assert_eq!(g.top_k, None);
        assert_eq!(g.stop_strings, vec!["\n".to_string()]);
        assert!(g.validate().is_ok());
        for bad in [
            GenerationConfig {
                temperature: 0.0,
                do_sample: true,
                ..Default::default()
            },
            GenerationConfig {
                top_p: 0.0,
                ..Default::default()
            },
            GenerationConfig {
                top_k: Some(0),
                ..Default::default()
            },
            GenerationConfig {
                repetition_penalty: 0.0,
                ..Default::default()
            },
            GenerationConfig {
                num_return_sequences: 2,
                ..Default::default()
            },
            GenerationConfig {
                num_return_sequences: 0,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(g.merge_json("{\"top_k\": \"x\"}").is_err());
    }
}
