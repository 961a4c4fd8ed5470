//! `kiln generate text --dtype f32|bf16|q8` on the tiny random GPT-2 folder written by
//! transformers (`crates/kiln-models/tests/reference/gen_gpt2.py`).

mod common;

use std::path::PathBuf;

use common::{fails, json};

fn tiny() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../kiln-models/tests/fixtures/gpt2/tiny-a")
        .display()
        .to_string()
}

#[test]
fn every_dtype_generates_and_a_bad_one_is_named() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny();
    for dtype in ["f32", "bf16", "q8"] {
        let v = json(
            t.path(),
            &[
                "generate",
                "text",
                "--model",
                &model,
                "--prompt",
                "Hello",
                "--greedy",
                "--max-new-tokens",
                "12",
                "--dtype",
                dtype,
                "--json",
            ],
        );
        assert_eq!(v["new_tokens"][0], 12, "{dtype}");
    }
    let e = fails(
        t.path(),
        &[
            "generate", "text", "--model", &model, "--prompt", "Hi", "--dtype", "int4",
        ],
    );
    assert!(e.contains("int4") && e.contains("f32, bf16, q8"), "{e}");
}
