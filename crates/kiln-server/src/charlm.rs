//! [`TextGenerator`] for kiln's character language models (`kiln train lstm|gru|rnn`): one
//! token is one character of the training text's vocabulary.

use std::path::Path;

use candle_core::{IndexOp, Tensor};
use kiln_data::text::CharVocab;
use kiln_models::rnn::{sample_next, CharLm, CharLmConfig, SamplingConfig};
use kiln_nn::Mode;

use crate::error::{LoadError, ModelError};
use crate::text::{CancelFlag, Flow, SamplingParams, TextGenerator};

/// The `kind` of a character language model folder (written by `kiln train lstm|gru|rnn`).
pub const CHAR_LM_KIND: &str = "char_lm";

/// Longest prompt accepted, in characters: the prompt is read in one forward pass that cannot
/// be interrupted, so its cost is bounded here.
pub const MAX_PROMPT_CHARS: usize = 8192;

/// What `kiln train lstm|gru|rnn` stores as the model's `config.json` "model" object.
#[derive(serde::Deserialize)]
struct LmFolder {
    lm: CharLmConfig,
    vocab: CharVocab,
}

/// A character language model and its vocabulary.
pub struct CharLmGenerator {
    lm: CharLm,
    vocab: CharVocab,
}

fn internal(e: impl std::fmt::Display) -> ModelError {
    ModelError::Internal(e.to_string())
}

impl CharLmGenerator {
    /// Load the model folder `dir` (kind [`CHAR_LM_KIND`]).
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let bad = |message: String| LoadError::Model {
            path: dir.display().to_string(),
            message,
        };
        let (config, vb) =
            kiln_models::folder::load(dir, CHAR_LM_KIND).map_err(|e| bad(e.to_string()))?;
        let folder: LmFolder = serde_json::from_value(config.model)
            .map_err(|e| bad(format!("config.json \"model\" is not a char LM: {e}")))?;
        if folder.vocab.len() != folder.lm.vocab_size {
            return Err(bad(format!(
                "the vocabulary has {} characters but the network has {} outputs",
                folder.vocab.len(),
                folder.lm.vocab_size
            )));
        }
        let lm = CharLm::new(folder.lm, vb).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            lm,
            vocab: folder.vocab,
        })
    }

    /// A generator over a built network and its vocabulary.
    pub fn new(lm: CharLm, vocab: CharVocab) -> Self {
        Self { lm, vocab }
    }
}

/// Set to −∞ the logits outside the nucleus: the most likely tokens (after dividing by
/// `temperature`) whose probabilities add up to at least `top_p`.
pub fn nucleus_mask(logits: &mut [f32], temperature: f64, top_p: f64) {
    if top_p >= 1.0 || temperature == 0.0 {
        return;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let max = logits[order[0]] as f64;
    let w: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / temperature).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut acc = 0.0;
    let mut keep = order.len();
    for (k, wi) in w.iter().enumerate() {
        acc += wi / total;
        if acc >= top_p {
            keep = k + 1;
            break;
        }
    }
    for &i in &order[keep..] {
        logits[i] = f32::NEG_INFINITY;
    }
}

impl TextGenerator for CharLmGenerator {
    fn kind(&self) -> &str {
        CHAR_LM_KIND
    }

    fn count_tokens(&self, text: &str) -> usize {
        text.chars().count()
    }

    fn generate(
        &self,
        prompt: &str,
        params: &SamplingParams,
        cancel: &CancelFlag,
        emit: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<usize, ModelError> {
        let n_chars = prompt.chars().count();
        if n_chars == 0 {
            return Err(ModelError::input(
                "prompt",
                "a character model needs a prompt of at least one character",
            ));
        }
        if n_chars > MAX_PROMPT_CHARS {
            return Err(ModelError::input(
                "prompt",
                format!("the prompt has {n_chars} characters; at most {MAX_PROMPT_CHARS}"),
            ));
        }
        let ids = self
            .vocab
            .encode(prompt)
            .map_err(|e| ModelError::input("prompt", e.to_string()))?;
        let cfg = SamplingConfig {
            temperature: params.temperature,
            top_k: params.top_k,
            seed: params.seed,
        };
        cfg.validate()
            .map_err(|e| ModelError::input("temperature", e.to_string()))?;
        let mut rng = kiln_core::rng(params.seed);
        let mode = Mode::eval();
        let device = candle_core::Device::Cpu;
        let ids = Tensor::new(ids.as_slice(), &device)
            .and_then(|t| t.unsqueeze(0)) // (1, T)
            .map_err(internal)?;
        let (mut logits, mut state) = self
            .lm
            .forward_with_state(&ids, None, &mode)
            .map_err(internal)?; // (1, T, V)
        let mut produced = 0;
        while produced < params.max_tokens && !cancel.is_cancelled() {
            let t = logits.dim(1).map_err(internal)?;
            let mut last = logits
                .i((0, t - 1))
                .and_then(|r| r.to_vec1::<f32>()) // (V)
                .map_err(internal)?;
            nucleus_mask(&mut last, params.temperature, params.top_p);
            let next = sample_next(&last, &cfg, &mut rng);
            let text = self.vocab.decode(&[next]).map_err(internal)?;
            produced += 1;
            if emit(&text) == Flow::Stop || produced == params.max_tokens {
                break;
            }
            let ids = Tensor::new(&[[next]], &device).map_err(internal)?; // (1, 1)
            (logits, state) = self
                .lm
                .forward_with_state(&ids, Some(&state), &mode)
                .map_err(internal)?;
        }
        Ok(produced)
    }
}

#[cfg(test)]
mod tests {
    use super::nucleus_mask;

    #[test]
    fn nucleus_keeps_the_smallest_set_reaching_top_p() {
        // probabilities ∝ e^[3, 2, 1, 0] = [0.644, 0.237, 0.087, 0.032]
        let mut l = vec![1.0f32, 3.0, 0.0, 2.0];
        nucleus_mask(&mut l, 1.0, 0.8);
        assert_eq!(l, vec![f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY, 2.0]);
        let mut l = vec![1.0f32, 3.0, 0.0, 2.0];
        nucleus_mask(&mut l, 1.0, 0.5);
        assert_eq!(l[1], 3.0);
        assert_eq!(l.iter().filter(|v| v.is_finite()).count(), 1);
        let mut l = vec![1.0f32, 3.0];
        nucleus_mask(&mut l, 1.0, 1.0);
        assert_eq!(l, vec![1.0, 3.0]);
    }
}
