//! GPT-2 models through the router in process: a tiny random GPT-2 saved as a Hugging Face
//! folder (and as a `kiln train gpt` run folder), compared with calling
//! `kiln_models::gpt2::generate` directly; and the embedded default GPT.

use std::path::Path;

use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use kiln_models::gpt2::{self, load, GenerationConfig, Gpt2Config};
use kiln_server::gpt::{GptGenerator, DEFAULT_GPT_ID, GPT2_KIND};
use kiln_server::text::{chat_prompt, ChatMessage, CHAT_STOP};
use kiln_server::TextGenerator;
use kiln_server::{router, CancelFlag, Flow, Model, Registry, SamplingParams, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

const CORPUS: &str = "the cat sat on the mat. the dog ate the hat.\nuser: hi\nassistant: ok\n";

/// A tiny random GPT-2 (context 24) with a character tokenizer, saved as a Hugging Face folder.
fn save_tiny_gpt(dir: &Path) {
    let tok = kiln_models::tokenizer_train::char_level(CORPUS).unwrap();
    let tok =
        kiln_models::tokenizer::Tokenizer::from_bytes(tok.to_string(false).unwrap().as_bytes())
            .unwrap();
    let cfg = Gpt2Config {
        vocab_size: tok.vocab_size(),
        n_positions: 24,
        n_embd: 16,
        n_layer: 2,
        n_head: 2,
        bos_token_id: None,
        eos_token_id: None,
        ..Default::default()
    };
    let (_, vars) = gpt2::train::fresh(&cfg, 3).unwrap();
    gpt2::save::save_folder(dir, &cfg, vars.var_map(), &tok).unwrap();
}

/// The tiny GPT served as `tiny-gpt` (HF folder) and `run-gpt` (run folder layout).
fn fixture() -> (tempfile::TempDir, Router) {
    let t = tempfile::tempdir().unwrap();
    save_tiny_gpt(&t.path().join("tiny-gpt"));
    let run = t.path().join("run-gpt");
    save_tiny_gpt(&run.join("model"));
    std::fs::write(run.join("history.jsonl"), "").unwrap();
    let mut reg = Registry::new();
    assert_eq!(
        reg.add_folder(&t.path().join("tiny-gpt")).unwrap(),
        "tiny-gpt"
    );
    assert_eq!(reg.add_folder(&run).unwrap(), "run-gpt");
    let app = router(reg, ServerConfig::default()).unwrap();
    (t, app)
}

/// `kiln_models::gpt2::generate` called directly on the saved folder.
fn direct(dir: &Path, prompt: &str, n: usize, temperature: f64, seed: u64) -> String {
    let (model, _, tok, defaults) = load::load_folder(dir).unwrap();
    let cfg = GenerationConfig {
        max_new_tokens: n,
        do_sample: temperature != 0.0,
        temperature: if temperature == 0.0 { 1.0 } else { temperature },
        top_k: None,
        seed,
        ..defaults
    };
    let ids = tok.encode(prompt).unwrap();
    let out = gpt2::generate(&model, &[ids], &cfg, Some(&tok), &mut |_, _| Ok(())).unwrap();
    out.texts[0].clone()
}

fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Bytes) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body)
}

async fn call_json(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let (s, b) = call(app, req).await;
    let v = serde_json::from_slice(&b)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&b)));
    (s, v)
}

async fn completion(app: &Router, body: Value) -> Value {
    let (s, v) = call_json(app, post("/v1/completions", body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn greedy_and_seeded_completions_equal_the_library() {
    let (t, app) = fixture();
    let dir = t.path().join("tiny-gpt");
    let (_, models) = call_json(
        &app,
        Request::get("/v1/models").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(models["data"][0]["kind"], GPT2_KIND, "{models}");
    assert_eq!(models["data"][1]["id"], "run-gpt", "{models}");
    for model in ["tiny-gpt", "run-gpt"] {
        let v = completion(
            &app,
            json!({"model": model, "prompt": "the cat", "max_tokens": 12, "temperature": 0}),
        )
        .await;
        assert_eq!(
            v["choices"][0]["text"],
            direct(&dir, "the cat", 12, 0.0, 0),
            "{v}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["prompt_tokens"], 7);
        assert_eq!(v["usage"]["completion_tokens"], 12);
    }
    // Sampling: the seed gives the library's draw; choice i uses seed + i.
    let body = json!({"model": "tiny-gpt", "prompt": "the", "max_tokens": 15, "seed": 5, "n": 2,
                      "temperature": 0.9});
    let a = completion(&app, body.clone()).await;
    let b = completion(&app, body).await;
    assert_eq!(a["choices"], b["choices"], "same seed, same text");
    assert_eq!(a["choices"][0]["text"], direct(&dir, "the", 15, 0.9, 5));
    assert_eq!(a["choices"][1]["text"], direct(&dir, "the", 15, 0.9, 6));
    let texts: Vec<Value> = [1, 2, 3]
        .iter()
        .map(|s| direct(&dir, "the", 15, 0.9, *s).into())
        .collect();
    assert!(
        texts.iter().any(|x| *x != a["choices"][0]["text"]),
        "other seeds give other texts"
    );
}

#[tokio::test]
async fn past_the_context_generation_runs_in_windows() {
    let (t, app) = fixture();
    let dir = t.path().join("tiny-gpt");
    // Context 24: the prompt (7) + 40 tokens needs windows; the first one is the library's.
    let body =
        json!({"model": "tiny-gpt", "prompt": "the cat", "max_tokens": 40, "temperature": 0});
    let v = completion(&app, body.clone()).await;
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert_eq!(text.chars().count(), 40, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 40);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert!(
        text.starts_with(&direct(&dir, "the cat", 17, 0.0, 0)),
        "{v}"
    );
    assert_eq!(completion(&app, body).await["choices"], v["choices"]);
}

#[tokio::test]
async fn chat_stop_and_stream_through_the_router() {
    let (t, app) = fixture();
    let dir = t.path().join("tiny-gpt");
    let messages = vec![ChatMessage {
        role: "user".into(),
        content: "hi".into(),
    }];
    let prompt = chat_prompt(&messages);
    let (s, v) = call_json(
        &app,
        post(
            "/v1/chat/completions",
            json!({"model": "tiny-gpt", "messages": messages, "max_tokens": 5, "temperature": 0}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let whole = direct(&dir, &prompt, 5, 0.0, 0);
    let expected = whole.split(CHAT_STOP).next().unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], expected, "{v}");

    // A stop sequence taken from the greedy text cuts it there.
    let greedy = direct(&dir, "the", 12, 0.0, 0);
    let stop: String = greedy.chars().skip(4).take(2).collect();
    let cut = &greedy[..greedy.find(&stop).unwrap()];
    let v = completion(
        &app,
        json!({"model": "tiny-gpt", "prompt": "the", "max_tokens": 12, "temperature": 0,
               "stop": stop}),
    )
    .await;
    assert_eq!(v["choices"][0]["text"], cut, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // Streaming: one chunk per token, the same text, then [DONE].
    let body = json!({"model": "tiny-gpt", "prompt": "the", "max_tokens": 10, "seed": 2,
                      "stream": true});
    let (s, bytes) = call(&app, post("/v1/completions", body)).await;
    assert_eq!(s, StatusCode::OK);
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks.len(), 11, "10 tokens and a final chunk: {text}");
    let streamed: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, direct(&dir, "the", 10, 1.0, 2));
}

#[tokio::test]
async fn bad_prompts_are_400s_naming_the_prompt() {
    let (_t, app) = fixture();
    for prompt in ["", "the ZEBRA"] {
        let (s, v) = call_json(
            &app,
            post(
                "/v1/completions",
                json!({"model": "tiny-gpt", "prompt": prompt, "max_tokens": 4}),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["param"], "prompt", "{v}");
    }
    let (_, v) = call_json(
        &app,
        post(
            "/v1/completions",
            json!({"model": "tiny-gpt", "prompt": "the ZEBRA", "max_tokens": 4}),
        ),
    )
    .await;
    assert!(v["error"]["message"].as_str().unwrap().contains('Z'), "{v}");
}

#[test]
fn cancel_and_flow_stop_end_generation() {
    let t = tempfile::tempdir().unwrap();
    save_tiny_gpt(t.path());
    let g = GptGenerator::load(t.path()).unwrap();
    let params = SamplingParams {
        max_tokens: 10,
        ..Default::default()
    };
    let mut seen = 0;
    let n = g
        .generate("the", &params, &CancelFlag::new(), &mut |_| {
            seen += 1;
            if seen == 3 {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })
        .unwrap();
    assert_eq!((n, seen), (3, 3));
    let cancel = CancelFlag::new();
    cancel.cancel();
    let mut emitted = 0;
    let n = g
        .generate("the", &params, &cancel, &mut |_| {
            emitted += 1;
            Flow::Continue
        })
        .unwrap();
    assert_eq!((n, emitted), (0, 0));
    // Cancelled mid-way (as a disconnecting client does): no token after the flag.
    let cancel = CancelFlag::new();
    let mut emitted = 0;
    let n = g
        .generate("the", &params, &cancel, &mut |_| {
            emitted += 1;
            if emitted == 2 {
                cancel.cancel();
            }
            Flow::Continue
        })
        .unwrap();
    assert_eq!((n, emitted), (2, 2));
}

#[tokio::test]
async fn the_embedded_default_gpt_serves_and_matches_the_library() {
    let g = GptGenerator::embedded().unwrap();
    let mut reg = Registry::new();
    reg.add(DEFAULT_GPT_ID, Model::Text(std::sync::Arc::new(g)))
        .unwrap();
    let app = router(reg, ServerConfig::default()).unwrap();
    let v = completion(
        &app,
        json!({"model": DEFAULT_GPT_ID, "prompt": "ROMEO:", "max_tokens": 20, "temperature": 0}),
    )
    .await;
    let (model, _, tok) = gpt2::embedded::load().unwrap();
    let cfg = GenerationConfig {
        max_new_tokens: 20,
        top_k: None,
        ..Default::default()
    };
    let ids = tok.encode("ROMEO:").unwrap();
    let out = gpt2::generate(&model, &[ids], &cfg, Some(&tok), &mut |_, _| Ok(())).unwrap();
    assert_eq!(v["choices"][0]["text"], out.texts[0], "{v}");
}

#[test]
fn unknown_kinds_list_gpt2_and_broken_gpt_folders_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let meta = kiln_core::folder::ModelMeta {
        features: vec![],
        target: "y".into(),
        classes: None,
        preprocessing: None,
    };
    let vars = kiln_nn::init::SeededVarMap::new(0);
    kiln_models::folder::save(t.path(), "nonsense", &meta, json!({}), vars.var_map()).unwrap();
    let Err(e) = Registry::new().add_folder(t.path()) else {
        panic!("a folder of an unknown kind loads");
    };
    let m = e.to_string();
    assert!(m.contains("cannot be served") && m.contains("gpt2"), "{m}");
    // A GPT-2 config without weights: an error naming what is missing.
    let g = tempfile::tempdir().unwrap();
    save_tiny_gpt(g.path());
    std::fs::remove_file(g.path().join("model.safetensors")).unwrap();
    let Err(e) = Registry::new().add_folder(g.path()) else {
        panic!("a GPT-2 folder without weights loads");
    };
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}
