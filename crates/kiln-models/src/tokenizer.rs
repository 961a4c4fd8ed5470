//! Byte-level BPE tokenizer (GPT-2's), on Hugging Face's `tokenizers` crate.
//!
//! Reads a `tokenizer.json` or a `vocab.json` + `merges.txt` pair (built as
//! `GPT2TokenizerFast` builds it: byte-level pre-tokenizer without prefix space, byte-level
//! decoder, `<|endoftext|>` as a special token). Encoding adds no BOS/EOS, as GPT-2's tokenizer;
//! `<|endoftext|>` written in the text is the special token. [`Tokenizer::gpt2`] is GPT-2's own
//! tokenizer, embedded in the binary.
//!
//! ```
//! let tok = kiln_models::tokenizer::Tokenizer::gpt2().unwrap();
//! let ids = tok.encode("Hello world").unwrap();
//! assert_eq!(ids, vec![15496, 995]);
//! assert_eq!(tok.decode(&ids).unwrap(), "Hello world");
//! ```

use std::path::Path;

use kiln_nn::{Error, Result};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

/// GPT-2's `tokenizer.json` (vocabulary 50257, `<|endoftext|>` = 50256).
const GPT2_TOKENIZER_JSON: &[u8] = include_bytes!("../assets/gpt2/tokenizer.json");

/// GPT-2's end-of-text token.
pub const ENDOFTEXT: &str = "<|endoftext|>";

/// A byte-level BPE tokenizer.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

fn folder_err(path: &Path, e: impl std::fmt::Display) -> Error {
    kiln_core::Error::folder(path, format!("cannot read the tokenizer: {e}")).into()
}

impl Tokenizer {
    /// GPT-2's tokenizer (embedded; no file is read).
    pub fn gpt2() -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(GPT2_TOKENIZER_JSON)
            .map_err(|e| Error::shape(format!("embedded GPT-2 tokenizer: {e}")))?;
        Ok(Self { inner })
    }

    /// Read a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| folder_err(path, e))?;
        Ok(Self { inner })
    }

    /// Parse the contents of a `tokenizer.json`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::shape(format!("tokenizer.json: {e}")))?;
        Ok(Self { inner })
    }

    /// Build GPT-2's byte-level BPE from a `vocab.json` and a `merges.txt`, as
    /// `GPT2TokenizerFast(vocab_file, merges_file)` does; `<|endoftext|>` becomes a special token
    /// when the vocabulary has it.
    pub fn from_vocab_merges(vocab: &Path, merges: &Path) -> Result<Self> {
        let (v, m) = match (vocab.to_str(), merges.to_str()) {
            (Some(v), Some(m)) => (v, m),
            _ => return Err(folder_err(vocab, "path is not valid UTF-8")),
        };
        let bpe = BPE::from_file(v, m)
            .build()
            .map_err(|e| folder_err(vocab, format!("{e} (with {})", merges.display())))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner
            .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
            .with_decoder(Some(ByteLevelDecoder::default()))
            .with_post_processor(Some(ByteLevel::new(true, false, true)));
        if inner.token_to_id(ENDOFTEXT).is_some() {
            inner
                .add_special_tokens([AddedToken::from(ENDOFTEXT, true)])
                .map_err(|e| folder_err(vocab, e))?;
        }
        Ok(Self { inner })
    }

    /// The token ids of `text` (no BOS/EOS added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::shape(format!("cannot encode {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The tokens (as strings in the vocabulary, e.g. `Ġworld`) of `text`.
    pub fn tokens(&self, text: &str) -> Result<Vec<String>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::shape(format!("cannot encode {text:?}: {e}")))?;
        Ok(enc.get_tokens().to_vec())
    }

    /// The text of `ids`, special tokens included (`skip_special_tokens=False`). Bytes that do
    /// not form valid UTF-8 become U+FFFD, as in transformers.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let n = self.vocab_size();
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= n) {
            return Err(Error::shape(format!(
                "cannot decode token id {bad}: the vocabulary has {n} tokens"
            )));
        }
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::shape(format!("cannot decode {ids:?}: {e}")))
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of `token`, if the vocabulary has it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The `tokenizer.json` text of this tokenizer (to save it in a model folder).
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(|e| Error::shape(format!("cannot serialise the tokenizer: {e}")))
    }

    /// The underlying `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Turns a growing list of generated ids into text pieces as soon as they are complete UTF-8:
/// a character split over several byte-level tokens is held back until its last byte arrives.
pub struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    printed: usize,
}

impl<'a> TextStream<'a> {
    /// A stream with nothing decoded yet.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            printed: 0,
        }
    }

    /// Add one id; returns the newly completed text (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let new = text.get(self.printed..).unwrap_or("").to_string();
        self.printed = text.len();
        Ok(new)
    }

    /// Whatever is still held back (an incomplete character, decoded as U+FFFD).
    pub fn finish(&mut self) -> Result<String> {
        let text = self.tokenizer.decode(&self.ids)?;
        let new = text.get(self.printed..).unwrap_or("").to_string();
        self.printed = text.len();
        Ok(new)
    }
}
