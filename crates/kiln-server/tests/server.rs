//! Every endpoint through the router in process (no socket): small models trained or built
//! here (a decision tree on iris, a tiny character LM, an MLP) and test doubles for what kiln
//! has no model of yet (text-to-image) or for timing (a generator that waits).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::Engine;
use futures_util::StreamExt;
use kiln_classical::tree::DecisionTreeClassifierParams;
use kiln_core::folder::{ModelFolder, ModelMeta};
use kiln_core::{Fit, Predict};
use kiln_data::text::CharVocab;
use kiln_models::cnn::{ConvBlock, ConvStack, ConvStackConfig};
use kiln_models::mlp::{Mlp, MlpConfig};
use kiln_models::rnn::{CharLm, CharLmConfig, SamplingConfig};
use kiln_nn::init::SeededVarMap;
use kiln_nn::Mode;
use kiln_server::{
    router, CancelFlag, Flow, ImageGenerator, Model, ModelError, Registry, SamplingParams,
    ServerConfig, TextGenerator,
};
use serde_json::{json, Value};
use tower::ServiceExt;

const CORPUS: &str = "the cat sat on the mat. the dog ate the hat.\nuser: hi\n";

/// A tiny char LM (seeded random weights) saved as `kiln train lstm` saves it.
fn save_char_lm(dir: &Path) {
    let vocab = CharVocab::from_text(CORPUS);
    let cfg = CharLmConfig {
        vocab_size: vocab.len(),
        embed_dim: 8,
        hidden_size: 16,
        num_layers: 1,
        ..CharLmConfig::default()
    };
    let vars = SeededVarMap::new(7);
    CharLm::new(cfg.clone(), vars.var_builder()).unwrap();
    let meta = ModelMeta {
        features: vec![],
        target: "next character".into(),
        classes: None,
        preprocessing: None,
    };
    let model = json!({ "lm": cfg, "vocab": vocab, "seq_len": 16 });
    kiln_models::folder::save(dir, "char_lm", &meta, model, vars.var_map()).unwrap();
}

/// The same model read back directly, to compare with what the server answers.
fn direct_greedy(dir: &Path, prompt: &str, n: usize) -> String {
    let (config, vb) = kiln_models::folder::load(dir, "char_lm").unwrap();
    let cfg: CharLmConfig = serde_json::from_value(config.model["lm"].clone()).unwrap();
    let vocab: CharVocab = serde_json::from_value(config.model["vocab"].clone()).unwrap();
    let lm = CharLm::new(cfg, vb).unwrap();
    let sampling = SamplingConfig {
        temperature: 0.0,
        top_k: None,
        seed: 0,
    };
    let ids = lm
        .generate(&vocab.encode(prompt).unwrap(), n, &sampling)
        .unwrap();
    vocab.decode(&ids).unwrap()
}

fn save_iris_tree(dir: &Path) -> kiln_classical::tree::DecisionTreeClassifier {
    let data = kiln_data::builtin::load("iris").unwrap();
    let mut params = DecisionTreeClassifierParams::default();
    params.tree.max_depth = Some(3);
    let tree = params.fit(&data).unwrap();
    let meta = ModelMeta {
        features: data.feature_names.clone(),
        target: data.target_name.clone(),
        classes: data.classes.clone(),
        preprocessing: None,
    };
    ModelFolder::save(dir, &meta, &tree).unwrap();
    tree
}

/// Draws `n` solid 4×4 PNGs whose grey level is the seed plus the image index.
struct SolidImages;

impl ImageGenerator for SolidImages {
    fn kind(&self) -> &str {
        "test_solid"
    }
    fn size(&self) -> (u32, u32) {
        (4, 4)
    }
    fn generate(
        &self,
        _prompt: &str,
        n: usize,
        seed: u64,
        _cancel: &CancelFlag,
    ) -> Result<Vec<Vec<u8>>, ModelError> {
        (0..n)
            .map(|i| {
                let img = image::GrayImage::from_pixel(
                    4,
                    4,
                    image::Luma([(seed as u8).wrapping_add(i as u8)]),
                );
                let mut out = std::io::Cursor::new(Vec::new());
                img.write_to(&mut out, image::ImageFormat::Png)
                    .map_err(|e| ModelError::Internal(e.to_string()))?;
                Ok(out.into_inner())
            })
            .collect()
    }
}

/// Emits "x" every few milliseconds until cancelled or `max_tokens`; records what happened.
#[derive(Default)]
struct Slow {
    started: AtomicUsize,
    /// Set when a generation ended before `max_tokens` (cancelled, or told to stop).
    stopped_early: AtomicBool,
    emitted: AtomicUsize,
}

struct SlowGen(Arc<Slow>);

impl TextGenerator for SlowGen {
    fn kind(&self) -> &str {
        "test_slow"
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.len()
    }
    fn generate(
        &self,
        _prompt: &str,
        params: &SamplingParams,
        cancel: &CancelFlag,
        emit: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<usize, ModelError> {
        self.0.started.fetch_add(1, Ordering::SeqCst);
        let mut n = 0;
        while n < params.max_tokens {
            if cancel.is_cancelled() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            n += 1;
            self.0.emitted.fetch_add(1, Ordering::SeqCst);
            if emit("x") == Flow::Stop {
                break;
            }
        }
        if n < params.max_tokens {
            self.0.stopped_early.store(true, Ordering::SeqCst);
        }
        Ok(n)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    lm_dir: std::path::PathBuf,
    tree: kiln_classical::tree::DecisionTreeClassifier,
    slow: Arc<Slow>,
    registry: Registry,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let lm_dir = dir.path().join("tiny-lm");
    save_char_lm(&lm_dir);
    let tree_dir = dir.path().join("iris-tree");
    let tree = save_iris_tree(&tree_dir);
    let mut registry = Registry::new();
    assert_eq!(registry.add_folder(&lm_dir).unwrap(), "tiny-lm");
    assert_eq!(registry.add_folder(&tree_dir).unwrap(), "iris-tree");
    registry
        .add("solid", Model::Image(Arc::new(SolidImages)))
        .unwrap();
    let slow = Arc::new(Slow::default());
    registry
        .add("slow", Model::Text(Arc::new(SlowGen(slow.clone()))))
        .unwrap();
    Fixture {
        _dir: dir,
        lm_dir,
        tree,
        slow,
        registry,
    }
}

fn app(f: &Fixture, config: ServerConfig) -> Router {
    router(f.registry.clone(), config).unwrap()
}

fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
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

/// Assert an OpenAI error object with this status, param and (when given) code.
async fn expect_error(
    app: &Router,
    req: Request<Body>,
    status: StatusCode,
    param: Option<&str>,
) -> Value {
    let (s, v) = call_json(app, req).await;
    assert_eq!(s, status, "{v}");
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("code").is_some() && e.get("param").is_some(), "{v}");
    if let Some(p) = param {
        assert_eq!(e["param"], p, "{v}");
    }
    v
}

/// The `data:` payloads of an SSE body.
fn sse_events(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "stream must end with [DONE]: {text}"
    );
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("bad event {e:?}"))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn health_playground_and_models() {
    let f = fixture();
    let app = app(&f, ServerConfig::default());
    let (s, v) = call_json(&app, get("/health")).await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"status": "ok", "models": 4}))
    );
    let (s, page) = call(&app, get("/")).await;
    assert_eq!(s, StatusCode::OK);
    let page = String::from_utf8(page.to_vec()).unwrap();
    for needle in [
        "/v1/completions",
        "/v1/images/generations",
        "/v1/predict",
        "getReader",
    ] {
        assert!(page.contains(needle), "playground lacks {needle}");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the playground must load nothing from elsewhere"
    );
    let (s, v) = call_json(&app, get("/v1/models")).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tiny-lm", "iris-tree", "solid", "slow"]);
    assert_eq!(v["data"][0]["task"], "text");
    assert_eq!(
        v["data"][1]["classes"],
        json!(["setosa", "versicolor", "virginica"])
    );
    assert_eq!(v["data"][1]["features"].as_array().unwrap().len(), 4);
    assert_eq!(v["data"][2]["size"], "4x4");
}

#[tokio::test]
async fn greedy_completion_equals_the_library_and_seeds_reproduce() {
    let f = fixture();
    let app = app(&f, ServerConfig::default());
    let (s, v) = call_json(
        &app,
        post(
            "/v1/completions",
            json!({
                "model": "tiny-lm", "prompt": "the ", "max_tokens": 12, "temperature": 0
            }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["choices"][0]["text"],
        direct_greedy(&f.lm_dir, "the ", 12)
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 12, "total_tokens": 16})
    );

    let sample = |seed: u64| {
        post(
            "/v1/completions",
            json!({
                "model": "tiny-lm", "prompt": "the", "max_tokens": 30, "seed": seed, "top_p": 0.9, "top_k": 10, "n": 2
            }),
        )
    };
    let (_, a) = call_json(&app, sample(3)).await;
    let (_, b) = call_json(&app, sample(3)).await;
    let (_, c) = call_json(&app, sample(4)).await;
    assert_eq!(a["choices"], b["choices"], "same seed, same text");
    assert_ne!(a["choices"], c["choices"], "another seed, other text");
    assert_eq!(a["choices"].as_array().unwrap().len(), 2);
    assert_ne!(
        a["choices"][0]["text"], a["choices"][1]["text"],
        "choices use different seeds"
    );
    // choice 1 of seed 3 is choice 0 of seed 4
    assert_eq!(a["choices"][1]["text"], c["choices"][0]["text"]);
}

#[tokio::test]
async fn stop_sequences_cut_the_text() {
    let f = fixture();
    let app = app(&f, ServerConfig::default());
    let full = direct_greedy(&f.lm_dir, "the ", 40);
    // stop at the second distinct character of the greedy text
    let stop: String = full.chars().nth(1).unwrap().to_string();
    let cut = &full[..full.find(&stop).unwrap()];
    let (s, v) = call_json(&app, post("/v1/completions", json!({
        "model": "tiny-lm", "prompt": "the ", "max_tokens": 40, "temperature": 0, "stop": [stop]
    }))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["choices"][0]["text"], cut);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn streamed_completion_matches_the_whole_one() {
    let f = fixture();
    let app = app(&f, ServerConfig::default());
    let body = json!({"model": "tiny-lm", "prompt": "a cat", "max_tokens": 25, "seed": 9});
    let (_, whole) = call_json(&app, post("/v1/completions", body.clone())).await;
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let res = app
        .clone()
        .oneshot(post("/v1/completions", streamed))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let events = sse_events(&bytes);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.len() >= 25, "one chunk per token and a final one");
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, whole["choices"][0]["text"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "text_completion" && c["model"] == "tiny-lm"));
}

#[tokio::test]
async fn chat_uses_the_template_and_streams_deltas() {
    let f = fixture();
    let app = app(&f, ServerConfig::default());
    let messages = json!([{"role": "user", "content": "hi"}]);
    let (s, v) = call_json(
        &app,
        post(
            "/v1/chat/completions",
            json!({
                "model": "tiny-lm", "messages": messages, "max_tokens": 10, "temperature": 0
            }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let full = direct_greedy(&f.lm_dir, "user: hi\nassistant:", 10);
    let expect = full.split("\nuser:").next().unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], expect);
    assert_eq!(v["usage"]["prompt_tokens"], "user: hi\nassistant:".len());

    let res = app.clone().oneshot(post("/v1/chat/completions", json!({
        "model": "tiny-lm", "messages": messages, "max_tokens": 10, "temperature": 0, "stream": true
    }))).await.unwrap();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let events = sse_events(&bytes);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, expect);
    assert_eq!(chunks.last().unwrap()["choices"][0]["delta"], json!({}));
    assert!(chunks.last().unwrap()["choices"][0]["finish_reason"].is_string());
}

#[tokio::test]
async fn bad_requests_get_openai_error_objects() {
    let f = fixture();
    let app = app(
        &f,
        ServerConfig {
            max_tokens: 100,
            ..ServerConfig::default()
        },
    );
    let bad_json = Request::post("/v1/completions")
        .body(Body::from("{not json"))
        .unwrap();
    expect_error(&app, bad_json, StatusCode::BAD_REQUEST, None).await;
    let wrong_type = post("/v1/completions", json!({"model": "tiny-lm", "prompt": 5}));
    expect_error(&app, wrong_type, StatusCode::BAD_REQUEST, None).await;
    let v = expect_error(
        &app,
        post("/v1/completions", json!({"model": "gpt-9", "prompt": "a"})),
        StatusCode::NOT_FOUND,
        Some("model"),
    )
    .await;
    assert_eq!(v["error"]["code"], "model_not_found");
    let cases = [
        (json!({"temperature": 2.5}), "temperature"),
        (json!({"temperature": -1}), "temperature"),
        (json!({"top_p": 0}), "top_p"),
        (json!({"top_p": 1.5}), "top_p"),
        (json!({"top_k": 0}), "top_k"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"max_tokens": 101}), "max_tokens"),
        (json!({"n": 0}), "n"),
        (json!({"n": 100}), "n"),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
        (json!({"prompt": "ÉÉ"}), "prompt"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": ["a", "b"]}), "prompt"),
    ];
    for (extra, param) in cases {
        let mut body = json!({"model": "tiny-lm", "prompt": "the"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let v = expect_error(
            &app,
            post("/v1/completions", body),
            StatusCode::BAD_REQUEST,
            Some(param),
        )
        .await;
        assert!(v["error"]["message"].as_str().unwrap().len() > 10);
    }
    // a text request to a classifier, a prediction request to a text model
    expect_error(
        &app,
        post(
            "/v1/completions",
            json!({"model": "iris-tree", "prompt": "a"}),
        ),
        StatusCode::BAD_REQUEST,
        Some("model"),
    )
    .await;
    expect_error(
        &app,
        post("/v1/predict", json!({"model": "tiny-lm", "rows": [[1]]})),
        StatusCode::BAD_REQUEST,
        Some("model"),
    )
    .await;
    expect_error(
        &app,
        post(
            "/v1/chat/completions",
            json!({"model": "tiny-lm", "messages": []}),
        ),
        StatusCode::BAD_REQUEST,
        Some("messages"),
    )
    .await;
    let v = expect_error(&app, get("/v1/nothing"), StatusCode::NOT_FOUND, None).await;
    assert_eq!(v["error"]["code"], "not_found");
    expect_error(
        &app,
        get("/v1/completions"),
        StatusCode::METHOD_NOT_ALLOWED,
        None,
    )
    .await;
    // a path that looks like a file is just an unknown route
    expect_error(&app, get("/../../etc/passwd"), StatusCode::NOT_FOUND, None).await;
}

#[tokio::test]
async fn api_key_is_required_when_set() {
    let f = fixture();
    let app = app(
        &f,
        ServerConfig {
            api_key: Some("s3cret".into()),
            ..ServerConfig::default()
        },
    );
    let with = |key: Option<&str>| {
        let mut r = Request::get("/v1/models");
        if let Some(k) = key {
            r = r.header(header::AUTHORIZATION, k);
        }
        r.body(Body::empty()).unwrap()
    };
    for key in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cre"),
        Some("Bearer s3cret2"),
        Some("s3cret"),
        Some("Basic s3cret"),
    ] {
        let v = expect_error(&app, with(key), StatusCode::UNAUTHORIZED, None).await;
        assert_eq!(v["error"]["code"], "invalid_api_key");
    }
    assert_eq!(
        call(&app, with(Some("Bearer s3cret"))).await.0,
        StatusCode::OK
    );
    // the POST routes and metrics are guarded too; health and the page are not
    let req = post(
        "/v1/completions",
        json!({"model": "tiny-lm", "prompt": "a"}),
    );
    expect_error(&app, req, StatusCode::UNAUTHORIZED, None).await;
    assert_eq!(
        call(&app, get("/metrics")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(call(&app, get("/health")).await.0, StatusCode::OK);
    assert_eq!(call(&app, get("/")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let f = fixture();
    let app = app(
        &f,
        ServerConfig {
            body_limit: 1024,
            ..ServerConfig::default()
        },
    );
    let big = json!({"model": "tiny-lm", "prompt": "the ".repeat(400)});
    let v = expect_error(
        &app,
        post("/v1/completions", big),
        StatusCode::PAYLOAD_TOO_LARGE,
        None,
    )
    .await;
    assert_eq!(v["error"]["code"], "request_too_large");
    let small = json!({"model": "tiny-lm", "prompt": "the ".repeat(100), "max_tokens": 1});
    assert_eq!(
        call(&app, post("/v1/completions", small)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn requests_past_the_queue_get_429() {
    let f = fixture();
    let app = app(
        &f,
        ServerConfig {
            max_concurrent: 1,
            max_queue: 1,
            ..ServerConfig::default()
        },
    );
    let slow = |n: u32| {
        post(
            "/v1/completions",
            json!({"model": "slow", "prompt": "a", "max_tokens": n}),
        )
    };
    // one runs (about 1 s), one waits in the queue, the third is refused
    let running = tokio::spawn(call_owned(app.clone(), slow(200)));
    while f.slow.started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let queued = tokio::spawn(call_owned(app.clone(), slow(1)));
    let metrics = wait_for_queue(&app).await;
    assert!(metrics.contains("kiln_queue_length 1"), "{metrics}");
    let v = expect_error(&app, slow(1), StatusCode::TOO_MANY_REQUESTS, None).await;
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(running.await.unwrap().0, StatusCode::OK);
    assert_eq!(queued.await.unwrap().0, StatusCode::OK);
    let (_, m) = call(&app, get("/metrics")).await;
    let m = String::from_utf8(m.to_vec()).unwrap();
    assert!(m.contains("kiln_rejected_total 1"), "{m}");
    assert!(
        m.contains("kiln_requests_total{endpoint=\"/v1/completions\",status=\"429\"} 1"),
        "{m}"
    );
}

async fn call_owned(app: Router, req: Request<Body>) -> (StatusCode, Bytes) {
    call(&app, req).await
}

async fn wait_for_queue(app: &Router) -> String {
    for _ in 0..500 {
        let (_, m) = call(app, get("/metrics")).await;
        let m = String::from_utf8(m.to_vec()).unwrap();
        if m.contains("kiln_queue_length 1") {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the second request never queued")
}

#[tokio::test]
async fn a_client_that_disconnects_stops_its_generation() {
    let f = fixture();
    let app = app(&f, ServerConfig::default());
    let res = app
        .clone()
        .oneshot(post(
            "/v1/completions",
            json!({
                "model": "slow", "prompt": "a", "max_tokens": 1000, "stream": true
            }),
        ))
        .await
        .unwrap();
    let mut body = res.into_body().into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(body); // the client goes away after one token
    for _ in 0..400 {
        if f.slow.stopped_early.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        f.slow.stopped_early.load(Ordering::SeqCst),
        "generation did not stop"
    );
    let emitted = f.slow.emitted.load(Ordering::SeqCst);
    assert!(emitted < 1000, "it stopped early ({emitted} tokens)");
    // and the slot is free again
    let (s, _) = call(
        &app,
        post(
            "/v1/completions",
            json!({"model": "slow", "prompt": "a", "max_tokens": 2}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn slow_requests_time_out_with_504() {
    let f = fixture();
    let app = app(
        &f,
        ServerConfig {
            timeout_secs: 0.1,
            ..ServerConfig::default()
        },
    );
    let v = expect_error(
        &app,
        post(
            "/v1/completions",
            json!({"model": "slow", "prompt": "a", "max_tokens": 1000}),
        ),
        StatusCode::GATEWAY_TIMEOUT,
        None,
    )
    .await;
    assert_eq!(v["error"]["code"], "timeout");
    assert!(f.slow.emitted.load(Ordering::SeqCst) < 1000);
}

#[tokio::test]
async fn images_come_back_as_base64_pngs() {
    let f = fixture();
    let app = app(&f, ServerConfig::default());
    let (s, v) = call_json(&app, post("/v1/images/generations", json!({
        "model": "solid", "prompt": "a red square", "n": 2, "seed": 40, "response_format": "b64_json", "size": "4x4"
    }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, d) in data.iter().enumerate() {
        let png = base64::engine::general_purpose::STANDARD
            .decode(d["b64_json"].as_str().unwrap())
            .unwrap();
        let img = image::load_from_memory(&png).unwrap().to_luma8();
        assert_eq!(img.dimensions(), (4, 4));
        assert_eq!(img.get_pixel(0, 0).0[0], 40 + i as u8);
    }
    let base = json!({"model": "solid", "prompt": "x"});
    for (k, val, param) in [
        ("n", json!(0), "n"),
        ("n", json!(11), "n"),
        ("response_format", json!("url"), "response_format"),
        ("size", json!("1024x1024"), "size"),
    ] {
        let mut b = base.clone();
        b[k] = val;
        expect_error(
            &app,
            post("/v1/images/generations", b),
            StatusCode::BAD_REQUEST,
            Some(param),
        )
        .await;
    }
    expect_error(
        &app,
        post(
            "/v1/images/generations",
            json!({"model": "tiny-lm", "prompt": "x"}),
        ),
        StatusCode::BAD_REQUEST,
        Some("model"),
    )
    .await;
}

#[tokio::test]
async fn predictions_of_a_tree_match_the_library() {
    let f = fixture();
    let app = app(&f, ServerConfig::default());
    let data = kiln_data::builtin::load("iris").unwrap();
    let rows: Vec<Vec<f64>> = [0, 60, 120, 149]
        .iter()
        .map(|&i| data.x.row(i).to_vec())
        .collect();
    let expect = f
        .tree
        .predict(
            ndarray::Array2::from_shape_vec((4, 4), rows.concat())
                .unwrap()
                .view(),
        )
        .unwrap();
    let (s, v) = call_json(
        &app,
        post("/v1/predict", json!({"model": "iris-tree", "rows": rows})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let idx: Vec<f64> = v["class_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(idx, expect.to_vec());
    let names = ["setosa", "versicolor", "virginica"];
    let want: Vec<&str> = expect.iter().map(|&i| names[i as usize]).collect();
    assert_eq!(v["predictions"], json!(want));
    assert_eq!(v["classes"], json!(names));
    for p in v["probabilities"].as_array().unwrap() {
        let s: f64 = p
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((s - 1.0).abs() < 1e-9);
    }
    // rows keyed by feature name, in any order, with numbers as strings (a CSV row)
    let names_f = &data.feature_names;
    let obj: serde_json::Map<String, Value> = names_f
        .iter()
        .rev()
        .zip(rows[3].iter().rev())
        .map(|(n, x)| (n.clone(), json!(x.to_string())))
        .collect();
    let (s, v2) = call_json(
        &app,
        post("/v1/predict", json!({"model": "iris-tree", "rows": [obj]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v2}");
    assert_eq!(v2["predictions"][0], v["predictions"][3]);

    let bad = [
        json!({"model": "iris-tree", "rows": [[1, 2, 3]]}),
        json!({"model": "iris-tree", "rows": [[1, 2, 3, "x"]]}),
        json!({"model": "iris-tree", "rows": [[1, 2, 3, [4]]]}),
        json!({"model": "iris-tree", "rows": [{"sepal length (cm)": 1}]}),
        json!({"model": "iris-tree", "rows": [{"nope": 1}]}),
        json!({"model": "iris-tree", "rows": [5]}),
        json!({"model": "iris-tree", "rows": []}),
        json!({"model": "iris-tree", "image": "aGVsbG8="}),
    ];
    for b in bad {
        expect_error(
            &app,
            post("/v1/predict", b.clone()),
            StatusCode::BAD_REQUEST,
            None,
        )
        .await;
    }
}

#[tokio::test]
async fn an_mlp_folder_predicts_as_its_network() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MlpConfig {
        input_dim: 3,
        hidden: vec![8],
        output_dim: 2,
        ..MlpConfig::default()
    };
    let vars = SeededVarMap::new(1);
    let mlp = Mlp::new(cfg.clone(), vars.var_builder()).unwrap();
    let meta = ModelMeta {
        features: vec!["a".into(), "b".into(), "c".into()],
        target: "y".into(),
        classes: Some(vec!["no".into(), "yes".into()]),
        preprocessing: None,
    };
    kiln_models::folder::save(
        dir.path(),
        "mlp",
        &meta,
        serde_json::to_value(&cfg).unwrap(),
        vars.var_map(),
    )
    .unwrap();
    let mut registry = Registry::new();
    let id = registry.add_folder(dir.path()).unwrap();
    let app = router(registry, ServerConfig::default()).unwrap();
    let rows = vec![vec![0.5f32, -1.0, 2.0], vec![-3.0, 0.1, 0.0]];
    let xs = candle_core::Tensor::new(rows.clone(), &candle_core::Device::Cpu).unwrap();
    let logits: Vec<Vec<f32>> = mlp.forward(&xs, &Mode::eval()).unwrap().to_vec2().unwrap();
    let (s, v) = call_json(
        &app,
        post("/v1/predict", json!({"model": id, "rows": rows})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for (r, l) in logits.iter().enumerate() {
        let best = if l[1] > l[0] { 1 } else { 0 };
        assert_eq!(v["class_indices"][r], best);
        let p1 = 1.0 / (1.0 + ((l[0] - l[1]) as f64).exp());
        assert!((v["probabilities"][r][1].as_f64().unwrap() - p1).abs() < 1e-5);
    }
    let v = expect_error(
        &app,
        post("/v1/predict", json!({"model": id, "rows": [[1, null, 2]]})),
        StatusCode::BAD_REQUEST,
        Some("rows"),
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("non-finite"),
        "{v}"
    );
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_latency() {
    let f = fixture();
    let app = app(&f, ServerConfig::default());
    call(
        &app,
        post(
            "/v1/completions",
            json!({"model": "tiny-lm", "prompt": "a", "max_tokens": 7}),
        ),
    )
    .await;
    call(
        &app,
        post("/v1/completions", json!({"model": "nope", "prompt": "a"})),
    )
    .await;
    call(&app, get("/no/such/route")).await;
    let (s, m) = call(&app, get("/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    let m = String::from_utf8(m.to_vec()).unwrap();
    for line in [
        "kiln_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1",
        "kiln_requests_total{endpoint=\"/v1/completions\",status=\"404\"} 1",
        "kiln_requests_total{endpoint=\"unmatched\",status=\"404\"} 1",
        "kiln_errors_total{endpoint=\"/v1/completions\"} 1",
        "kiln_tokens_generated_total 7",
        "kiln_queue_length 0",
        "kiln_request_duration_seconds_count{endpoint=\"/v1/completions\"} 2",
        "kiln_generation_duration_seconds_count 1",
    ] {
        assert!(m.lines().any(|l| l == line), "metrics lack {line:?}:\n{m}");
    }
}

#[test]
fn bad_server_settings_and_folders_are_errors() {
    for c in [
        ServerConfig {
            max_concurrent: 0,
            ..ServerConfig::default()
        },
        ServerConfig {
            max_tokens: 0,
            ..ServerConfig::default()
        },
        ServerConfig {
            timeout_secs: 0.0,
            ..ServerConfig::default()
        },
        ServerConfig {
            body_limit: 10,
            ..ServerConfig::default()
        },
        ServerConfig {
            api_key: Some(String::new()),
            ..ServerConfig::default()
        },
    ] {
        assert!(router(Registry::new(), c).is_err());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut r = Registry::new();
    assert!(r.add_folder(&dir.path().join("missing")).is_err());
    let lm = dir.path().join("lm");
    save_char_lm(&lm);
    r.add_folder(&lm).unwrap();
    let e = r.add_folder(&lm).unwrap_err();
    assert!(e.to_string().contains("two models are named \"lm\""), "{e}");
}

fn png(img: &image::GrayImage) -> String {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    base64::engine::general_purpose::STANDARD.encode(out.into_inner())
}

#[tokio::test]
async fn a_conv_net_classifies_an_uploaded_png() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ConvStackConfig {
        image_size: (8, 8),
        blocks: vec![ConvBlock {
            out_channels: 2,
            ..ConvBlock::default()
        }],
        hidden: vec![],
        num_classes: 3,
        ..ConvStackConfig::default()
    };
    let vars = SeededVarMap::new(2);
    let net = ConvStack::new(cfg.clone(), vars.var_builder()).unwrap();
    let meta = ModelMeta {
        features: (0..64).map(|i| format!("px{i}")).collect(),
        target: "digit".into(),
        classes: Some(vec!["a".into(), "b".into(), "c".into()]),
        preprocessing: None,
    };
    kiln_models::folder::save(
        dir.path(),
        "conv_stack",
        &meta,
        serde_json::to_value(&cfg).unwrap(),
        vars.var_map(),
    )
    .unwrap();
    let mut registry = Registry::new();
    let id = registry.add_folder(dir.path()).unwrap();
    let app = router(registry, ServerConfig::default()).unwrap();
    let img = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y * 3) as u8]));
    // pixel_max 16: values as the digits dataset holds them
    let pixels: Vec<f32> = img.pixels().map(|p| p.0[0] as f32 * 16.0 / 255.0).collect();
    let xs =
        candle_core::Tensor::from_vec(pixels, (1, 1, 8, 8), &candle_core::Device::Cpu).unwrap();
    let logits: Vec<f32> = net
        .forward(&xs, &Mode::eval())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let best = (0..3)
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap();
    let (s, v) = call_json(
        &app,
        post(
            "/v1/predict",
            json!({"model": id, "image": png(&img), "pixel_max": 16}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["class_indices"], json!([best]));
    let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
    for k in 0..3 {
        let p = (logits[k] as f64).exp() / z;
        assert!((v["probabilities"][0][k].as_f64().unwrap() - p).abs() < 1e-5);
    }
    // a larger image is resized to the model's 8×8; a data URL prefix is accepted
    let big = image::GrayImage::from_pixel(32, 16, image::Luma([200]));
    let url = format!("data:image/png;base64,{}", png(&big));
    let (s, v) = call_json(
        &app,
        post("/v1/predict", json!({"model": id, "images": [url]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // not base64, not an image, an image too large to decode, an image to a table model
    let huge = png(&image::GrayImage::new(5000, 1));
    for bad in ["%%%", "aGVsbG8=", huge.as_str()] {
        expect_error(
            &app,
            post("/v1/predict", json!({"model": id, "image": bad})),
            StatusCode::BAD_REQUEST,
            Some("image"),
        )
        .await;
    }
}

/// The embedded shapes model behind the image endpoint: 32×32 PNGs, the same seed gives the
/// same pictures, and a word outside its vocabulary is a 400 naming the word.
#[tokio::test]
async fn the_embedded_image_model_draws_pngs() {
    let mut registry = Registry::new();
    let dalle = kiln_server::KilnImageGenerator::embedded().unwrap();
    registry
        .add(kiln_server::DEFAULT_IMAGE_ID, Model::Image(Arc::new(dalle)))
        .unwrap();
    let app = kiln_server::router(registry, ServerConfig::default()).unwrap();
    let body = json!({
        "model": kiln_server::DEFAULT_IMAGE_ID, "prompt": "a large red circle in the center",
        "n": 2, "seed": 7, "response_format": "b64_json"
    });
    let (s, first) = call_json(&app, post("/v1/images/generations", body.clone())).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let data = first["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for d in data {
        let png = base64::engine::general_purpose::STANDARD
            .decode(d["b64_json"].as_str().unwrap())
            .unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (32, 32));
    }
    let (_, again) = call_json(&app, post("/v1/images/generations", body)).await;
    assert_eq!(first["data"], again["data"], "same seed, same pictures");
    let (s, v) = call_json(&app, post("/v1/images/generations", json!({
        "model": kiln_server::DEFAULT_IMAGE_ID, "prompt": "a purple dragon", "response_format": "b64_json"
    }))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("dragon"), "{msg}");
}
