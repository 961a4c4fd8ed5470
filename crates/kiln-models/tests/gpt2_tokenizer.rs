//! GPT-2 tokenizer against transformers' `GPT2TokenizerFast` (fixtures written by
//! `tests/reference/gen_gpt2.py`; `gpt2_test_cases.json` from the project's shared reference).

use std::path::PathBuf;

use kiln_models::tokenizer::{TextStream, Tokenizer};

fn fixture(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gpt2")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn gpt2_reference_cases_encode_and_decode() {
    let tok = Tokenizer::gpt2().unwrap();
    assert_eq!(tok.vocab_size(), 50257);
    let f = fixture("gpt2_test_cases.json");
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 17);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want = ids(&c["ids"]);
        assert_eq!(tok.encode(text).unwrap(), want, "encode {text:?}");
        let tokens: Vec<String> = c["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        assert_eq!(tok.tokens(text).unwrap(), tokens, "tokens {text:?}");
        assert_eq!(tok.decode(&want).unwrap(), text, "decode {text:?}");
    }
}

#[test]
fn gpt2_extra_cases_unicode_emoji_chinese_spaces_endoftext() {
    let tok = Tokenizer::gpt2().unwrap();
    let f = fixture("gpt2_tokenizer_extra.json");
    for c in f["cases"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        let want = ids(&c["ids"]);
        assert_eq!(tok.encode(text).unwrap(), want, "encode {text:?}");
        assert_eq!(
            tok.decode(&want).unwrap(),
            c["decoded"].as_str().unwrap(),
            "decode {text:?}"
        );
    }
    assert_eq!(tok.encode("<|endoftext|>").unwrap(), vec![50256]);
    assert_eq!(tok.token_to_id("<|endoftext|>"), Some(50256));
}

#[test]
fn decode_rejects_out_of_range_ids() {
    let tok = Tokenizer::gpt2().unwrap();
    let e = tok.decode(&[50257]).unwrap_err().to_string();
    assert!(e.contains("50257") && e.contains("50257 tokens"), "{e}");
}

#[test]
fn text_stream_holds_back_split_characters() {
    let tok = Tokenizer::gpt2().unwrap();
    let text = "a 🙂 中文 b";
    let ids = tok.encode(text).unwrap();
    let mut s = TextStream::new(&tok);
    let mut out = String::new();
    for &i in &ids {
        let piece = s.push(i).unwrap();
        assert!(!piece.contains('\u{FFFD}'), "{piece:?}");
        out.push_str(&piece);
    }
    out.push_str(&s.finish().unwrap());
    assert_eq!(out, text);
}

#[test]
fn tiny_folder_tokenizers_match_transformers() {
    let f = fixture("gpt2_parity.json");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2");
    for m in f["models"].as_array().unwrap() {
        let folder = dir.join(m["folder"].as_str().unwrap());
        // tiny-a has tokenizer.json, tiny-b vocab.json + merges.txt
        let tok = kiln_models::gpt2::load::load_tokenizer(&folder).unwrap();
        for c in m["tokenizer_cases"].as_array().unwrap() {
            let text = c["text"].as_str().unwrap();
            assert_eq!(
                tok.encode(text).unwrap(),
                ids(&c["ids"]),
                "{folder:?} {text:?}"
            );
            assert_eq!(tok.decode(&ids(&c["ids"])).unwrap(), text);
        }
        for (t, p) in m["texts"]
            .as_array()
            .unwrap()
            .iter()
            .zip(m["prompts"].as_array().unwrap())
        {
            assert_eq!(tok.encode(t.as_str().unwrap()).unwrap(), ids(p));
        }
    }
}
