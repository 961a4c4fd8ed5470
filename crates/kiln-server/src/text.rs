//! Text generation: the [`TextGenerator`] trait every text model implements, its sampling
//! settings, the cancellation flag, stop sequences and the chat template.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::ModelError;

/// How to sample a continuation. The server checks the ranges before a generator sees them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// Most tokens to generate (default 16, OpenAI's).
    pub max_tokens: usize,
    /// Divide the logits by this, in [0, 2]; 0 is greedy (default 1).
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens whose probabilities (after temperature)
    /// add up to at least this, in (0, 1] (default 1: all).
    pub top_p: f64,
    /// Keep only the k most likely tokens, ≥ 1 (default none: all).
    pub top_k: Option<usize>,
    /// Seed of the sampler (default 0).
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_tokens: 16,
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
            seed: 0,
        }
    }
}

/// Whether generation should go on after a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Generate the next token.
    Continue,
    /// Stop now (a stop sequence matched, or the client left).
    Stop,
}

/// A flag that stops a generation: set when a client disconnects or a deadline passes.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the generation to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`CancelFlag::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that cancels this flag when dropped (e.g. with a response body the client
    /// stopped reading), unless [`CancelOnDrop::disarm`] was called.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }
}

/// Cancels its flag when dropped; see [`CancelFlag::on_drop`].
#[derive(Debug)]
pub struct CancelOnDrop(Option<CancelFlag>);

impl CancelOnDrop {
    /// Do not cancel on drop (the work finished normally).
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            f.cancel();
        }
    }
}

/// A model that continues a prompt token by token.
pub trait TextGenerator: Send + Sync {
    /// The model's kind as written in its folder (`char_lm`, `gpt2`...).
    fn kind(&self) -> &str;

    /// Number of tokens `text` encodes to (for `usage.prompt_tokens`).
    fn count_tokens(&self, text: &str) -> usize;

    /// Continue `prompt` with at most `params.max_tokens` tokens, passing the text of each new
    /// token to `emit` as soon as it is sampled. Stops early when `emit` answers
    /// [`Flow::Stop`] or `cancel` is set (checked before every token). Returns the number of
    /// tokens generated. Runs on a blocking thread: it may take as long as it needs.
    fn generate(
        &self,
        prompt: &str,
        params: &SamplingParams,
        cancel: &CancelFlag,
        emit: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<usize, ModelError>;
}

/// Cut generated text at the first of the stop sequences, holding back text that may be the
/// start of one until it is known not to be (so a stream never shows part of a stop sequence).
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Add `piece`; returns the text now safe to show and whether a stop sequence matched
    /// (after which nothing more is shown).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.pending.push_str(piece);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(i) = first {
            let out = self.pending[..i].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Hold back the longest suffix of `pending` that is a proper prefix of a stop.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if i > keep && self.pending.ends_with(&s[..i]) {
                    keep = i;
                }
            }
        }
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    /// The text held back, once generation has ended without a match.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// The chat template: each message as `"{role}: {content}\n"`, then `"assistant:"` for the
/// model to continue. The server adds the stop sequence [`CHAT_STOP`] so the reply ends where
/// the model starts writing the user's next turn.
pub fn chat_prompt(messages: &[ChatMessage]) -> String {
    let mut s = String::new();
    for m in messages {
        s.push_str(&m.role);
        s.push_str(": ");
        s.push_str(&m.content);
        s.push('\n');
    }
    s.push_str("assistant:");
    s
}

/// The stop sequence added to every chat completion.
pub const CHAT_STOP: &str = "\nuser:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_matcher_cuts_at_the_first_stop_and_holds_back_prefixes() {
        let mut m = StopMatcher::new(&["END".to_string(), "\n\n".to_string()]);
        assert_eq!(m.push("ab"), ("ab".to_string(), false));
        assert_eq!(m.push("cE"), ("c".to_string(), false)); // "E" may start "END"
        assert_eq!(m.push("x"), ("Ex".to_string(), false));
        assert_eq!(m.push("EN"), (String::new(), false));
        assert_eq!(m.push("D tail"), (String::new(), true));
        let mut m = StopMatcher::new(&["END".to_string()]);
        assert_eq!(m.push("aEN"), ("a".to_string(), false));
        assert_eq!(m.finish(), "EN");
        let mut m = StopMatcher::new(&[]);
        assert_eq!(m.push("x\n"), ("x\n".to_string(), false));
    }

    #[test]
    fn chat_template_is_documented_format() {
        let p = chat_prompt(&[
            ChatMessage {
                role: "system".into(),
                content: "be brief".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            },
        ]);
        assert_eq!(p, "system: be brief\nuser: hi\nassistant:");
    }

    #[test]
    fn cancel_on_drop_sets_the_flag_unless_disarmed() {
        let f = CancelFlag::new();
        f.on_drop().disarm();
        assert!(!f.is_cancelled());
        drop(f.on_drop());
        assert!(f.is_cancelled());
    }
}
