//! `kiln train gpt`: a tiny GPT-2 learns a small corpus into a Hugging Face folder; validation
//! loss and perplexity are reported; same seed same run; resume continues exactly; BPE and
//! fine-tuning (`--init-from`) work; bad input gets clear errors.

mod common;

use std::path::Path;

use common::{fails, json, run_ok};
use serde_json::Value;

/// A small corpus with structure to learn (seeded, no randomness needed).
fn corpus() -> String {
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far",
    ];
    let mut s = String::new();
    for i in 0..400usize {
        s += words[(i * 7 + i / 3) % words.len()];
        s += if i % 9 == 8 { ".\n" } else { " " };
    }
    s
}

const TINY: &[&str] = &[
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "16",
    "--block-size",
    "16",
    "--batch-size",
    "8",
    "--optimizer",
    "adamw",
    "--lr",
    "0.01",
    "--quiet",
    "--json",
];

fn train(dir: &Path, out: &str, extra: &[&str]) -> Value {
    let mut args = vec!["train", "gpt", "--text", "corpus.txt", "--out", out];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    json(dir, &args)
}

fn history(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("corpus.txt"), corpus()).unwrap();
    dir
}

#[test]
fn learns_reports_perplexity_and_writes_a_hf_folder() {
    let dir = setup();
    let p = dir.path();
    let r = train(p, "run", &["--steps", "40", "--eval-every", "20"]);
    let v = &r["validation"];
    let loss = v["loss"].as_f64().unwrap();
    assert!((v["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-9);
    assert!(r["train"]["perplexity"].as_f64().is_some());
    // A uniform guess over the distinct characters has loss ln V.
    let mut chars: Vec<char> = corpus().chars().collect();
    chars.sort_unstable();
    chars.dedup();
    let uniform = (chars.len() as f64).ln();
    assert!(
        loss < uniform - 0.5,
        "validation loss {loss}, uniform {uniform}"
    );
    let h = history(&p.join("run"));
    let evals: Vec<&Value> = h.iter().filter(|r| r["kind"] == "eval").collect();
    assert_eq!(evals.len(), 2);
    for e in &evals {
        let l = e["loss"].as_f64().unwrap();
        assert!((e["perplexity"].as_f64().unwrap() - l.exp()).abs() < 1e-9);
    }
    let first = h[0]["loss"].as_f64().unwrap();
    assert!(loss < first, "loss did not fall: {first} -> {loss}");

    let model = p.join("run/model");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "gpt2");
    assert_eq!(cfg["architectures"][0], "GPT2LMHeadModel");
    assert_eq!(
        (cfg["n_layer"].as_u64(), cfg["n_positions"].as_u64()),
        (Some(1), Some(16))
    );
    assert_eq!(cfg["vocab_size"].as_u64(), Some(chars.len() as u64));
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(model.join(f).is_file(), "{f}");
    }
}

#[test]
fn weight_decay_skips_biases_and_norms_unless_decay_all() {
    let dir = setup();
    let p = dir.path();
    let decay = ["--steps", "3", "--weight-decay", "0.5"];
    train(p, "matrices", &decay);
    train(p, "all", &[&decay[..], &["--decay-all"]].concat());
    let recorded = |run: &str| -> Value {
        let c: Value = serde_json::from_str(
            &std::fs::read_to_string(p.join(run).join("config.json")).unwrap(),
        )
        .unwrap();
        c["optimizer"]["decay_matrices_only"].clone()
    };
    assert_eq!(recorded("matrices"), Value::Bool(true));
    assert_eq!(recorded("all"), Value::Bool(false));
    let e = fails(
        p,
        &[
            "train",
            "gpt",
            "--text",
            "corpus.txt",
            "--optimizer",
            "sgd",
            "--decay-all",
        ],
    );
    assert!(e.contains("--decay-all"), "{e}");
}

#[test]
fn same_seed_same_run_and_resume_continues_exactly() {
    let dir = setup();
    let p = dir.path();
    let a = train(p, "a", &["--steps", "20", "--seed", "3"]);
    let b = train(p, "b", &["--steps", "10", "--seed", "3"]);
    let b = {
        let _ = b;
        train(p, "b", &["--steps", "20", "--seed", "3", "--resume"])
    };
    assert_eq!(b["start_step"], 10);
    assert_eq!(a["validation"]["loss"], b["validation"]["loss"]);
    let weights = |run: &str| std::fs::read(p.join(run).join("model/model.safetensors")).unwrap();
    assert_eq!(weights("a"), weights("b"));
    let c = train(p, "c", &["--steps", "20", "--seed", "4"]);
    assert_ne!(a["validation"]["loss"], c["validation"]["loss"]);
}

#[test]
fn bpe_tokenizer_and_fine_tuning() {
    let dir = setup();
    let p = dir.path();
    let r = train(
        p,
        "bpe",
        &["--tokenizer", "bpe", "--vocab-size", "280", "--steps", "10"],
    );
    assert!(r["validation"]["loss"].as_f64().unwrap().is_finite());
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("bpe/model/config.json")).unwrap())
            .unwrap();
    let v = cfg["vocab_size"].as_u64().unwrap();
    assert!(v > 257 && v <= 280, "vocab_size {v}");
    // The trainer puts the special token <|endoftext|> first.
    assert_eq!(cfg["eos_token_id"], 0);

    // Fine-tune the character model: it starts where the first run ended.
    let base = train(p, "base", &["--steps", "30"]);
    let ft = json(
        p,
        &[
            "train",
            "gpt",
            "--text",
            "corpus.txt",
            "--init-from",
            "base/model",
            "--out",
            "ft",
            "--steps",
            "10",
            "--lr",
            "0.001",
            "--batch-size",
            "8",
            "--quiet",
            "--json",
        ],
    );
    let first_ft = history(&p.join("ft"))[0]["loss"].as_f64().unwrap();
    let base_loss = base["validation"]["loss"].as_f64().unwrap();
    assert!(
        first_ft < base_loss + 0.3,
        "fine-tuning started from scratch? first loss {first_ft}, base validation {base_loss}"
    );
    assert!(ft["validation"]["loss"].as_f64().unwrap() < 2.0);
}

#[test]
fn generate_reads_run_folders_and_defaults_to_the_embedded_model() {
    let dir = setup();
    let p = dir.path();
    train(p, "run", &["--steps", "5"]);
    let gen = |more: &[&str]| {
        let mut a = vec![
            "generate",
            "text",
            "--prompt",
            "the cat",
            "--max-new-tokens",
            "8",
        ];
        a.extend_from_slice(more);
        String::from_utf8(run_ok(p, &a).stdout).unwrap()
    };
    // A `kiln train gpt` run folder, and its model/ folder, give the same text.
    let a = gen(&["--model", "run", "--seed", "1"]);
    assert_eq!(a, gen(&["--model", "run/model", "--seed", "1"]));
    assert!(
        a.starts_with("the cat") && a.trim_end().len() > "the cat".len(),
        "{a:?}"
    );
    // No --model: the embedded Shakespeare GPT; same seed, same text.
    let d1 = gen(&["--seed", "5", "--temperature", "0.8"]);
    assert_eq!(d1, gen(&["--seed", "5", "--temperature", "0.8"]));
    assert!(
        d1.starts_with("the cat") && d1.trim_end().chars().count() > 7,
        "{d1:?}"
    );
    assert_ne!(d1, gen(&["--seed", "6", "--temperature", "0.8"]));
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = setup();
    let p = dir.path();
    std::fs::write(p.join("empty.txt"), "").unwrap();
    std::fs::write(p.join("short.txt"), "abcdefghij").unwrap();
    let base = ["train", "gpt", "--steps", "2", "--quiet"];
    let run = |more: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(more);
        fails(p, &a)
    };
    let e = run(&["--text", "empty.txt"]);
    assert!(e.contains("empty"), "{e}");
    let e = run(&["--text", "short.txt", "--block-size", "16"]);
    assert!(e.contains("too few for --block-size 16"), "{e}");
    let e = run(&["--text", "corpus.txt", "--n-head", "3", "--n-embd", "16"]);
    assert!(e.contains("n_head = 3") && e.contains("n_embd = 16"), "{e}");
    let e = run(&["--text", "corpus.txt", "--init-from", "missing"]);
    assert!(e.contains("missing") && e.contains("config.json"), "{e}");
    let e = run(&["--text", "absent.txt"]);
    assert!(e.contains("absent.txt"), "{e}");
    let e = run(&[
        "--text",
        "corpus.txt",
        "--tokenizer",
        "bpe",
        "--vocab-size",
        "100",
    ]);
    assert!(e.contains("vocab_size = 100"), "{e}");
    run_ok(
        p,
        &[
            "train",
            "gpt",
            "--text",
            "corpus.txt",
            "--steps",
            "1",
            "--n-layer",
            "1",
            "--n-embd",
            "8",
            "--n-head",
            "2",
            "--block-size",
            "8",
            "--out",
            "one",
            "--quiet",
        ],
    );
    let e = run(&[
        "--text",
        "corpus.txt",
        "--init-from",
        "one/model",
        "--n-layer",
        "2",
    ]);
    assert!(
        e.contains("--n-layer cannot be combined with --init-from"),
        "{e}"
    );
    let e = run(&[
        "--text",
        "corpus.txt",
        "--init-from",
        "one/model",
        "--block-size",
        "9",
    ]);
    assert!(e.contains("n_positions = 8"), "{e}");
    let e = run(&[
        "--text",
        "corpus.txt",
        "--optimizer",
        "sgd",
        "--beta2",
        "0.9",
    ]);
    assert!(e.contains("--beta2"), "{e}");
}
