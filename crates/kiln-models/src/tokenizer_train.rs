//! Tokenizers made from a training corpus, in the Hugging Face `tokenizers` format, so the
//! `tokenizer.json` kiln writes beside a GPT-2 folder loads in kiln, in `tokenizers` and in
//! `transformers.AutoTokenizer`:
//!
//! * [`char_level`]: one token per distinct character of the corpus (nanoGPT's
//!   `shakespeare_char`), ids in sorted character order. Stored as a `BPE` model whose
//!   vocabulary is the characters and whose merge list is empty, with no pre-tokenizer (so
//!   spaces and newlines are tokens like any other) and a `Fuse` decoder (tokens are joined
//!   without separators).
//! * [`byte_level_bpe`]: GPT-2's scheme — byte-level pre-tokenisation (the GPT-2 regex, bytes
//!   mapped to printable characters), a BPE trained on the corpus up to a vocabulary size, the
//!   `<|endoftext|>` special token, and the byte-level decoder.
//!
//! `kiln train gpt --tokenizer char|bpe` calls these.

use std::collections::BTreeSet;

use kiln_nn::{Error, Result};
use tokenizers::Tokenizer;

/// The special token of byte-level BPE tokenizers (GPT-2's end of text).
pub const END_OF_TEXT: &str = "<|endoftext|>";

fn tok_err(what: &str) -> impl FnOnce(tokenizers::Error) -> Error + '_ {
    move |e| Error::Core(kiln_core::Error::InvalidData(format!("{what}: {e}")))
}

/// A character-level tokenizer over the distinct characters of `text` (sorted by code point;
/// id i is the i-th character). Fails on an empty text.
pub fn char_level(text: &str) -> Result<Tokenizer> {
    let chars: BTreeSet<char> = text.chars().collect();
    if chars.is_empty() {
        return Err(Error::Core(kiln_core::Error::InvalidData(
            "a character tokenizer needs a non-empty text".into(),
        )));
    }
    let vocab: serde_json::Map<String, serde_json::Value> = chars
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), serde_json::json!(i)))
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": { "type": "Fuse" },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": []
        }
    });
    json.to_string()
        .parse::<Tokenizer>()
        .map_err(tok_err("building the character tokenizer"))
}

/// A byte-level BPE tokenizer (GPT-2's pre-tokenisation and decoder) trained on `text` up to
/// `vocab_size` tokens: the 256 byte symbols, `<|endoftext|>` and the learned merges. Needs
/// `vocab_size` ≥ 257.
pub fn byte_level_bpe(text: &str, vocab_size: usize) -> Result<Tokenizer> {
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper};
    use tokenizers::{PreTokenizerWrapper, TokenizerImpl};

    let min = ByteLevel::alphabet().len() + 1;
    if vocab_size < min {
        return Err(Error::param(
            "vocab_size",
            vocab_size,
            &format!("≥ {min} (256 byte symbols and {END_OF_TEXT})"),
        ));
    }
    if text.is_empty() {
        return Err(Error::Core(kiln_core::Error::InvalidData(
            "a BPE tokenizer needs a non-empty text".into(),
        )));
    }
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .build();
    let byte_level = ByteLevel::new(false, true, true);
    let mut tok: TokenizerImpl<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerImpl::new(BPE::default());
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(byte_level)));
    tok.with_post_processor(Some(PostProcessorWrapper::ByteLevel(byte_level)));
    tok.with_decoder(Some(DecoderWrapper::ByteLevel(byte_level)));
    // Lines are the training sequences (the pre-tokenizer never merges across them anyway,
    // except for runs of newlines, which stay whitespace tokens).
    tok.train(&mut trainer, text.split_inclusive('\n'))
        .map_err(tok_err("training the BPE tokenizer"))?;
    Ok(Tokenizer::from(tok))
}

/// Encode `text` into token ids with `tok` (no special tokens added), refusing characters
/// the tokenizer cannot represent instead of dropping them.
pub fn encode_all(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let enc = tok
        .encode_fast(text, false)
        .map_err(tok_err("encoding the text"))?;
    let ids = enc.get_ids().to_vec();
    // A BPE without an unknown token (the character-level one) silently drops what it does
    // not know: decode and compare to catch that.
    let back = tok
        .decode(&ids, false)
        .map_err(tok_err("decoding the text"))?;
    if back != text {
        let vocab = tok.get_vocab(false);
        let missing = text
            .chars()
            .find(|c| !vocab.contains_key(&c.to_string()))
            .map_or_else(String::new, |c| format!(": {c:?} is not in its vocabulary"));
        return Err(Error::Core(kiln_core::Error::InvalidData(format!(
            "the tokenizer cannot represent the text exactly (it decodes back to {} of {} \
             bytes){missing}",
            back.len(),
            text.len()
        ))));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_level_round_trips_and_orders_ids_by_character() {
        let tok = char_level("ba\nab 诗").unwrap();
        assert_eq!(tok.get_vocab_size(false), 5);
        let ids = encode_all(&tok, "ab 诗\n").unwrap();
        assert_eq!(ids, [2, 3, 1, 4, 0]);
        assert_eq!(tok.decode(&ids, false).unwrap(), "ab 诗\n");
        let e = encode_all(&tok, "abc").unwrap_err().to_string();
        assert!(e.contains("'c' is not in its vocabulary"), "{e}");
        assert!(char_level("").is_err());
    }

    #[test]
    fn byte_level_bpe_learns_merges_and_round_trips() {
        let text = "the cat sat on the mat. the cat ate the rat.\n".repeat(20);
        let tok = byte_level_bpe(&text, 300).unwrap();
        let n = tok.get_vocab_size(true);
        assert!(n > 257 && n <= 300, "{n}");
        let ids = encode_all(&tok, &text).unwrap();
        assert!(ids.len() < text.len() / 2, "{} tokens", ids.len());
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        // Any text encodes: every byte has a symbol.
        let other = "Ünïcode ✓ never seen";
        let ids = encode_all(&tok, other).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), other);
        let e = byte_level_bpe(&text, 100).unwrap_err().to_string();
        assert!(e.contains("vocab_size = 100"), "{e}");
    }
}
