//! `kiln generate text` on a Hugging Face GPT-2 folder (the tiny random folder that
//! `crates/kiln-models/tests/reference/gen_gpt2.py` wrote with transformers).

mod common;

use std::path::PathBuf;

use common::{fails, json, run_ok};

fn tiny() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../kiln-models/tests/fixtures/gpt2/tiny-a")
        .display()
        .to_string()
}

fn fixture_greedy() -> (String, Vec<u32>) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../kiln-models/tests/fixtures/gpt2/gpt2_parity.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let m = &v["models"][0];
    assert_eq!(m["folder"], "tiny-a");
    let ids = m["greedy_50"][1]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    (m["texts"][1].as_str().unwrap().to_string(), ids)
}

#[test]
fn greedy_text_equals_transformers_streamed_and_json() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny();
    let (prompt, want) = fixture_greedy();
    let tok = kiln_models::gpt2::load::load_tokenizer(std::path::Path::new(&model)).unwrap();
    let want_text = tok.decode(&want).unwrap();
    let args = [
        "generate",
        "text",
        "--model",
        &model,
        "--prompt",
        &prompt,
        "--greedy",
        "--max-new-tokens",
        "50",
    ];
    let v = json(t.path(), &[&args[..], &["--json"]].concat());
    assert_eq!(v["texts"][0], want_text.as_str());
    assert_eq!(v["new_tokens"][0], 50);
    assert_eq!(v["finish"][0], "length");
    assert!(v["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    let out = String::from_utf8(run_ok(t.path(), &args).stdout).unwrap();
    assert_eq!(out, format!("{prompt}{want_text}\n"));
    // temperature 0 is greedy too
    let zero = [
        "generate",
        "text",
        "--model",
        &model,
        "--prompt",
        &prompt,
        "--temperature",
        "0",
        "--max-new-tokens",
        "50",
        "--json",
    ];
    assert_eq!(json(t.path(), &zero)["texts"][0], want_text.as_str());
}

#[test]
fn sampling_is_seeded_and_batches() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny();
    let run = |seed: &str| {
        json(
            t.path(),
            &[
                "generate",
                "text",
                "--model",
                &model,
                "--prompt",
                "Hello",
                "--prompt",
                "Once upon a time",
                "--num-return-sequences",
                "2",
                "--top-p",
                "0.9",
                "--top-k",
                "40",
                "--temperature",
                "0.9",
                "--repetition-penalty",
                "1.3",
                "--max-new-tokens",
                "12",
                "--seed",
                seed,
                "--json",
            ],
        )
    };
    let (a, b, c) = (run("1"), run("1"), run("2"));
    assert_eq!(a["texts"].as_array().unwrap().len(), 4);
    assert_eq!(a["texts"], b["texts"]);
    assert_ne!(a["texts"], c["texts"]);
}

#[test]
fn stop_strings_end_the_text() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny();
    let (prompt, want) = fixture_greedy();
    let tok = kiln_models::gpt2::load::load_tokenizer(std::path::Path::new(&model)).unwrap();
    let full = tok.decode(&want).unwrap();
    let stop: String = full.chars().skip(8).take(2).collect();
    let v = json(
        t.path(),
        &[
            "generate", "text", "--model", &model, "--prompt", &prompt, "--greedy", "--stop",
            &stop, "--json",
        ],
    );
    let text = v["texts"][0].as_str().unwrap();
    assert!(
        text.ends_with(&stop) && full.starts_with(text),
        "{text:?} {stop:?}"
    );
    assert_eq!(v["finish"][0], "stop_string");
}

#[test]
fn bad_requests_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny();
    let e = fails(
        t.path(),
        &[
            "generate", "text", "--model", &model, "--prompt", "hi", "--top-p", "0",
        ],
    );
    assert!(e.contains("top_p"), "{e}");
    let e = fails(
        t.path(),
        &[
            "generate",
            "text",
            "--model",
            &model,
            "--prompt",
            "hi",
            "--greedy",
            "--num-return-sequences",
            "2",
        ],
    );
    assert!(e.contains("num_return_sequences"), "{e}");
    let e = fails(
        t.path(),
        &[
            "generate",
            "text",
            "--model",
            &model,
            "--prompt",
            "hi",
            "--max-new-tokens",
            "500",
        ],
    );
    assert!(
        e.contains("max_new_tokens") && e.contains("n_positions = 96"),
        "{e}"
    );
    let e = fails(
        t.path(),
        &["generate", "text", "--model", &model, "--prompt", ""],
    );
    assert!(e.contains("no tokens"), "{e}");
    // a folder with only PyTorch weights
    let d = t.path().join("pt");
    std::fs::create_dir(&d).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(PathBuf::from(&model).join(f), d.join(f)).unwrap();
    }
    std::fs::write(d.join("pytorch_model.bin"), b"not really").unwrap();
    let e = fails(
        t.path(),
        &["generate", "text", "--model", "pt", "--prompt", "hi"],
    );
    assert!(
        e.contains("save_pretrained") && e.contains("safe_serialization=True"),
        "{e}"
    );
}
