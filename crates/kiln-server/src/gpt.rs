//! [`TextGenerator`] for GPT-2 models: Hugging Face GPT-2 folders, `kiln train gpt` run folders
//! (their `model/` folder) and kiln's embedded default GPT ([`GptGenerator::embedded`], served
//! by `kiln serve` as [`DEFAULT_GPT_ID`] when no `--model` is given).
//!
//! Sampling is [`kiln_models::gpt2::generate`]'s: temperature 0 is its greedy search, otherwise
//! it samples with temperature → top-k → top-p; the folder's `generation_config.json` supplies
//! the EOS token, the pad token and the repetition penalty. Each new token goes to the caller as
//! soon as it is chosen, as text completed to whole UTF-8 characters ([`TextStream`]).
//!
//! A request longer than the model's context (`n_positions`) runs in windows, as nanoGPT crops
//! its context: when the prompt plus `max_tokens` does not fit, each window continues the last
//! `n_positions / 2` tokens so far (the whole prompt, when it is no longer) with as many new
//! tokens as fit; window `w > 0` samples with seed `seed + w·0x9E3779B97F4A7C15`. A request that
//! fits is one call of `generate`, so its output is exactly the library's.

use std::path::Path;

use kiln_models::gpt2::generate::FinishReason;
use kiln_models::gpt2::{self, load, GenerationConfig, Gpt2, Gpt2Config};
use kiln_models::tokenizer::{TextStream, Tokenizer};

use crate::error::{LoadError, ModelError};
use crate::text::{CancelFlag, Flow, SamplingParams, TextGenerator};

/// The kind reported for GPT-2 models (Hugging Face's `model_type`).
pub const GPT2_KIND: &str = "gpt2";

/// The id `kiln serve` gives the embedded default GPT.
pub const DEFAULT_GPT_ID: &str = "kiln-shakespeare-gpt";

/// Seed step between context windows (the golden ratio in 64 bits), so the windows of one
/// choice and the choices of one request (seeds `s`, `s + 1`...) do not share seeds.
const WINDOW_SEED_STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// A GPT-2 model with its tokenizer and generation defaults.
pub struct GptGenerator {
    model: Gpt2,
    tokenizer: Tokenizer,
    defaults: GenerationConfig,
}

fn internal(e: impl std::fmt::Display) -> ModelError {
    ModelError::Internal(e.to_string())
}

impl GptGenerator {
    /// Load the Hugging Face GPT-2 folder `dir` (see [`load::load_folder`]).
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let (model, _, tokenizer, defaults) =
            load::load_folder(dir).map_err(|e| LoadError::Model {
                path: dir.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Self::new(model, tokenizer, defaults))
    }

    /// kiln's embedded default GPT ([`kiln_models::gpt2::embedded`]).
    pub fn embedded() -> Result<Self, LoadError> {
        let bad = |message: String| LoadError::Model {
            path: "<embedded default GPT>".into(),
            message,
        };
        let (model, cfg, tokenizer) = gpt2::embedded::load().map_err(|e| bad(e.to_string()))?;
        let mut defaults = GenerationConfig {
            eos_token_id: cfg.eos_token_id.into_iter().collect(),
            ..Default::default()
        };
        if let Some((_, bytes)) = gpt2::embedded::FILES
            .iter()
            .find(|(name, _)| *name == "generation_config.json")
        {
            let text = std::str::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
            defaults.merge_json(text).map_err(|e| bad(e.to_string()))?;
        }
        Ok(Self::new(model, tokenizer, defaults))
    }

    /// A generator over a built model, its tokenizer and its generation defaults (of which
    /// the EOS and pad tokens and the repetition penalty are used; requests set the rest).
    pub fn new(model: Gpt2, tokenizer: Tokenizer, defaults: GenerationConfig) -> Self {
        Self {
            model,
            tokenizer,
            defaults,
        }
    }

    /// The model's config.
    pub fn config(&self) -> &Gpt2Config {
        self.model.config()
    }

    /// The settings passed to [`gpt2::generate`] for one window of `max_new_tokens`.
    pub fn generation_config(&self, params: &SamplingParams) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens: params.max_tokens,
            do_sample: params.temperature != 0.0,
            temperature: if params.temperature == 0.0 {
                1.0
            } else {
                params.temperature
            },
            top_k: params.top_k,
            top_p: params.top_p,
            num_return_sequences: 1,
            // The server cuts at stop sequences itself (see `text::StopMatcher`).
            stop_strings: Vec::new(),
            seed: params.seed,
            ..self.defaults.clone()
        }
    }

    /// The prompt's token ids; an empty prompt starts from the BOS token when the model has
    /// one. Text the tokenizer cannot represent is an input error naming it.
    fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>, ModelError> {
        if prompt.is_empty() {
            return match self.config().bos_token_id {
                Some(bos) => Ok(vec![bos]),
                None => Err(ModelError::input(
                    "prompt",
                    "this model has no BOS token to start from: give a prompt of at least one \
                     character",
                )),
            };
        }
        let ids = self
            .tokenizer
            .encode(prompt)
            .map_err(|e| ModelError::input("prompt", e.to_string()))?;
        let back = self.tokenizer.decode(&ids).map_err(internal)?;
        if back != prompt {
            let mut outside: Vec<char> = Vec::new();
            for c in prompt.chars() {
                let one = c.to_string();
                let ok = self
                    .tokenizer
                    .encode(&one)
                    .and_then(|ids| self.tokenizer.decode(&ids))
                    .is_ok_and(|t| t == one);
                if !ok && !outside.contains(&c) {
                    outside.push(c);
                }
            }
            return Err(ModelError::input(
                "prompt",
                if outside.is_empty() {
                    format!("the prompt does not survive this model's tokenizer: it reads back as {back:?}")
                } else {
                    format!(
                        "the prompt has characters outside this model's vocabulary: {outside:?}"
                    )
                },
            ));
        }
        if ids.is_empty() {
            return Err(ModelError::input(
                "prompt",
                "the prompt encodes to no tokens",
            ));
        }
        Ok(ids)
    }
}

/// Why the callback of [`gpt2::generate`] ended a window early.
const STOPPED: &str = "generation stopped by the caller";

impl TextGenerator for GptGenerator {
    fn kind(&self) -> &str {
        GPT2_KIND
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer
            .encode(text)
            .map(|ids| ids.len())
            .unwrap_or(0)
    }

    /// Tokens produced are counted without the EOS token that ends a sequence.
    fn generate(
        &self,
        prompt: &str,
        params: &SamplingParams,
        cancel: &CancelFlag,
        emit: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<usize, ModelError> {
        let n_pos = self.config().n_positions;
        let mut context = self.prompt_ids(prompt)?;
        let base = self.generation_config(params);
        base.validate().map_err(|e| ModelError::InvalidInput {
            param: None,
            message: e.to_string(),
        })?;
        let mut pieces = TextStream::new(&self.tokenizer);
        let mut produced = 0;
        let mut stopped = false;
        let mut window = 0u64;
        while produced < params.max_tokens && !stopped {
            if cancel.is_cancelled() {
                return Ok(produced);
            }
            let left = params.max_tokens - produced;
            let keep = if context.len() + left <= n_pos {
                context.len()
            } else {
                context.len().min((n_pos / 2).max(1))
            };
            let new = left.min(n_pos.saturating_sub(keep));
            if new == 0 {
                return Err(ModelError::input(
                    "max_tokens",
                    format!("this model's context of {n_pos} tokens leaves no room to generate"),
                ));
            }
            let cfg = GenerationConfig {
                max_new_tokens: new,
                seed: params
                    .seed
                    .wrapping_add(window.wrapping_mul(WINDOW_SEED_STEP)),
                ..base.clone()
            };
            let input = vec![context[context.len() - keep..].to_vec()];
            let eos = &cfg.eos_token_id;
            let result = gpt2::generate(
                &self.model,
                &input,
                &cfg,
                Some(&self.tokenizer),
                &mut |_, id| {
                    if eos.contains(&id) {
                        return Ok(()); // ends the sequence; never shown
                    }
                    if cancel.is_cancelled() {
                        stopped = true;
                        return Err(kiln_nn::Error::shape(STOPPED));
                    }
                    produced += 1;
                    let piece = pieces.push(id)?;
                    if emit(&piece) == Flow::Stop {
                        stopped = true;
                        return Err(kiln_nn::Error::shape(STOPPED));
                    }
                    Ok(())
                },
            );
            match result {
                Ok(out) => {
                    context.extend_from_slice(&out.tokens[0]);
                    if out.finish[0] != FinishReason::Length {
                        break; // EOS
                    }
                }
                Err(_) if stopped => {}
                Err(e) => return Err(internal(e)),
            }
            window += 1;
        }
        if !stopped && !cancel.is_cancelled() {
            let rest = pieces.finish().map_err(internal)?;
            if !rest.is_empty() {
                emit(&rest);
            }
        }
        Ok(produced)
    }
}
