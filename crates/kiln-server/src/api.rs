//! The route handlers and middleware.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use ndarray::Array2;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::error::{ApiError, ModelError};
use crate::gate::{timeout_error, Gate, Slot};
use crate::image::ImageGenerator;
use crate::predict::{image_row, InputKind, Predictor};
use crate::registry::Model;
use crate::text::{
    chat_prompt, CancelFlag, ChatMessage, Flow, SamplingParams, StopMatcher, TextGenerator,
    CHAT_STOP,
};

type AppState = State<crate::State>;

/// Most choices (`n`) per text request.
const MAX_N: i64 = 8;
/// Most images per request.
const MAX_IMAGES: i64 = 10;
/// Most stop sequences.
const MAX_STOPS: usize = 4;
/// Most rows per prediction request.
const MAX_ROWS: usize = 10_000;

const PLAYGROUND: &str = include_str!("playground.html");

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- middleware

/// Count every request by route pattern and status, with its time to the response head.
pub(crate) async fn track(State(s): AppState, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = std::time::Instant::now();
    let res = next.run(req).await;
    s.metrics.request(
        &endpoint,
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

/// Byte strings equal, in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// `Authorization: Bearer KEY` when the server has a key.
pub(crate) async fn auth(State(s): AppState, req: Request, next: Next) -> Response {
    let Some(key) = s.config.api_key.as_deref() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let err = match given {
        Some(g) if constant_time_eq(g.trim().as_bytes(), key.as_bytes()) => {
            return next.run(req).await
        }
        Some(_) => "invalid API key",
        None => "missing API key: send the header Authorization: Bearer KEY",
    };
    let mut res = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        Some("invalid_api_key"),
        err,
    )
    .into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

// ---------------------------------------------------------------- small routes

pub(crate) async fn playground() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 img-src data:; connect-src 'self'; form-action 'none'; base-uri 'none'",
            ),
        ],
        PLAYGROUND,
    )
        .into_response()
}

pub(crate) async fn health(State(s): AppState) -> Json<Value> {
    Json(json!({ "status": "ok", "models": s.registry.len() }))
}

pub(crate) async fn metrics(State(s): AppState) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

pub(crate) async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("not_found"),
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

pub(crate) async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        Some("method_not_allowed"),
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

pub(crate) async fn models(State(s): AppState) -> Json<Value> {
    let created = now_secs();
    let data: Vec<Value> = s
        .registry
        .iter()
        .map(|(id, m)| {
            let mut v = json!({
                "id": id, "object": "model", "created": created, "owned_by": "kiln",
                "kind": m.kind(), "task": m.task(),
            });
            match m {
                Model::Predict(p) => {
                    let i = p.info();
                    v["features"] = json!(i.features);
                    v["target"] = json!(i.target);
                    v["classes"] = json!(i.classes);
                    v["input"] = json!(i.input);
                }
                Model::Image(g) => v["size"] = json!(size_str(g.size())),
                Model::Text(_) => {}
            }
            v
        })
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

fn size_str((w, h): (u32, u32)) -> String {
    format!("{w}x{h}")
}

// ---------------------------------------------------------------- request parsing

fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        let (kind, code) = if status == StatusCode::PAYLOAD_TOO_LARGE {
            ("invalid_request_error", Some("request_too_large"))
        } else {
            ("invalid_request_error", None)
        };
        ApiError::new(
            status,
            kind,
            code,
            format!("cannot read the request body: {}", r.body_text()),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(
            None,
            format!("the request body is not valid JSON for this endpoint: {e}"),
        )
    })
}

fn lookup<'a>(s: &'a crate::State, id: &str) -> Result<&'a Model, ApiError> {
    s.registry
        .get(id)
        .ok_or_else(|| ApiError::unknown_model(id, &s.registry.ids()))
}

fn wrong_task(id: &str, m: &Model, wanted: &str) -> ApiError {
    ApiError::invalid(
        Some("model"),
        format!(
            "the model {id:?} ({}) answers {} requests; this endpoint needs {wanted}",
            m.kind(),
            m.task()
        ),
    )
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Sampling fields shared by completions and chat; numbers are read wide so an out-of-range
/// value gets a range error, not a type error.
#[derive(Deserialize)]
struct SamplingFields {
    model: String,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    n: Option<i64>,
    stop: Option<OneOrMany>,
    seed: Option<i64>,
    #[serde(default)]
    stream: bool,
}

#[derive(Deserialize)]
struct CompletionRequest {
    prompt: Option<OneOrMany>,
    #[serde(flatten)]
    fields: SamplingFields,
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    fields: SamplingFields,
}

/// A validated text request.
struct TextJob {
    id: String,
    model: String,
    generator: Arc<dyn TextGenerator>,
    prompt: String,
    params: SamplingParams,
    n: usize,
    stops: Vec<String>,
    chat: bool,
    stream: bool,
}

fn text_job(
    s: &crate::State,
    f: SamplingFields,
    prompt: String,
    chat: bool,
) -> Result<TextJob, ApiError> {
    let model = lookup(s, &f.model)?;
    let Model::Text(generator) = model else {
        return Err(wrong_task(&f.model, model, "a text model"));
    };
    let limit = s.config.max_tokens;
    let max_tokens = f
        .max_completion_tokens
        .or(f.max_tokens)
        .unwrap_or(16.min(limit as i64));
    if max_tokens < 1 || max_tokens > limit as i64 {
        return Err(ApiError::out_of_range(
            "max_tokens",
            max_tokens,
            &format!("1 to {limit} (this server's --max-tokens)"),
        ));
    }
    let temperature = f.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::out_of_range("temperature", temperature, "0 to 2"));
    }
    let top_p = f.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::out_of_range(
            "top_p",
            top_p,
            "greater than 0 and at most 1",
        ));
    }
    let top_k = match f.top_k {
        None => None,
        Some(k) if k >= 1 => Some(k as usize),
        Some(k) => return Err(ApiError::out_of_range("top_k", k, "at least 1")),
    };
    let n = f.n.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(ApiError::out_of_range("n", n, &format!("1 to {MAX_N}")));
    }
    let mut stops = match f.stop {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    };
    if stops.len() > MAX_STOPS {
        return Err(ApiError::out_of_range(
            "stop",
            format!("{} sequences", stops.len()),
            &format!("at most {MAX_STOPS}"),
        ));
    }
    if chat {
        stops.push(CHAT_STOP.to_string());
    }
    // Without a seed each request draws the next number of the server's request counter:
    // still reproducible from the server's log of requests, never a hidden global RNG.
    let number = s.counter.fetch_add(1, Ordering::Relaxed);
    let seed = f.seed.map_or(number, |v| v as u64);
    Ok(TextJob {
        id: format!("{}-{number}", if chat { "chatcmpl" } else { "cmpl" }),
        model: f.model,
        generator: generator.clone(),
        prompt,
        params: SamplingParams {
            max_tokens: max_tokens as usize,
            temperature,
            top_p,
            top_k,
            seed,
        },
        n: n as usize,
        stops,
        chat,
        stream: f.stream,
    })
}

// ---------------------------------------------------------------- text generation

/// One finished choice.
struct ChoiceOut {
    text: String,
    finish_reason: &'static str,
}

enum RunError {
    Model(ModelError),
    Cancelled,
    Timeout,
}

/// Generate every choice of `job` in turn on this (blocking) thread, passing each shown piece
/// to `sink(choice, text)`; `sink` answers false when nobody listens any more.
fn run_choices(
    job: &TextJob,
    state: &crate::State,
    cancel: &CancelFlag,
    deadline: Instant,
    sink: &mut dyn FnMut(usize, &str) -> bool,
) -> Result<(Vec<ChoiceOut>, usize), RunError> {
    let mut out = Vec::with_capacity(job.n);
    let mut total = 0;
    for i in 0..job.n {
        let mut params = job.params.clone();
        params.seed = params.seed.wrapping_add(i as u64);
        let mut matcher = StopMatcher::new(&job.stops);
        let mut text = String::new();
        let (mut stopped, mut timed_out) = (false, false);
        let started = std::time::Instant::now();
        let produced = job
            .generator
            .generate(&job.prompt, &params, cancel, &mut |piece| {
                if Instant::now() >= deadline {
                    timed_out = true;
                    return Flow::Stop;
                }
                let (show, hit) = matcher.push(piece);
                if !show.is_empty() {
                    text.push_str(&show);
                    if !sink(i, &show) {
                        cancel.cancel();
                        return Flow::Stop;
                    }
                }
                if hit {
                    stopped = true;
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            });
        let produced = match produced {
            Ok(p) => p,
            Err(e) => return Err(RunError::Model(e)),
        };
        state
            .metrics
            .generation(started.elapsed().as_secs_f64(), produced as u64);
        total += produced;
        if cancel.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        if timed_out {
            return Err(RunError::Timeout);
        }
        if !stopped {
            let rest = matcher.finish();
            if !rest.is_empty() {
                text.push_str(&rest);
                sink(i, &rest);
            }
        }
        let finish_reason = if !stopped && produced >= params.max_tokens {
            "length"
        } else {
            "stop"
        };
        out.push(ChoiceOut {
            text,
            finish_reason,
        });
    }
    Ok((out, total))
}

fn run_error(e: RunError) -> ApiError {
    match e {
        RunError::Model(m) => m.into(),
        RunError::Timeout => timeout_error(),
        RunError::Cancelled => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("cancelled"),
            "the request was cancelled",
        ),
    }
}

fn join_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        None,
        format!("the model task failed: {e}"),
    )
}

pub(crate) async fn completions(
    State(s): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse(body)?;
    let prompt = match req.prompt {
        None => String::new(),
        Some(OneOrMany::One(p)) => p,
        Some(OneOrMany::Many(mut v)) if v.len() == 1 => v.remove(0),
        Some(OneOrMany::Many(v)) => {
            return Err(ApiError::invalid(
                Some("prompt"),
                format!("send one prompt per request (got a list of {})", v.len()),
            ))
        }
    };
    let job = text_job(&s, req.fields, prompt, false)?;
    generate_text(s, job).await
}

pub(crate) async fn chat(
    State(s): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatRequest = parse(body)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "messages must hold at least one message",
        ));
    }
    let job = text_job(&s, req.fields, chat_prompt(&req.messages), true)?;
    generate_text(s, job).await
}

async fn generate_text(s: crate::State, job: TextJob) -> Result<Response, ApiError> {
    let deadline = Instant::now() + s.config.timeout();
    let slot = Gate::enter(&s, deadline).await?;
    if job.stream {
        return Ok(stream_text(s, job, slot, deadline));
    }
    let cancel = CancelFlag::new();
    let guard = cancel.on_drop(); // the client left: this future is dropped, the work stops
    let st = s.clone();
    let job = Arc::new(job);
    let j = job.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        run_choices(&j, &st, &cancel, deadline, &mut |_, _| true)
    })
    .await
    .map_err(join_error)?;
    guard.disarm();
    let (choices, total) = result.map_err(run_error)?;
    let prompt_tokens = job.generator.count_tokens(&job.prompt);
    let choices: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            if job.chat {
                json!({ "index": i, "message": { "role": "assistant", "content": c.text },
                        "logprobs": null, "finish_reason": c.finish_reason })
            } else {
                json!({ "index": i, "text": c.text, "logprobs": null, "finish_reason": c.finish_reason })
            }
        })
        .collect();
    Ok(Json(json!({
        "id": job.id,
        "object": if job.chat { "chat.completion" } else { "text_completion" },
        "created": now_secs(),
        "model": job.model,
        "choices": choices,
        "usage": { "prompt_tokens": prompt_tokens, "completion_tokens": total,
                   "total_tokens": prompt_tokens + total },
    }))
    .into_response())
}

/// One server-sent event.
fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn stream_text(s: crate::State, job: TextJob, slot: Slot, deadline: Instant) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let cancel = CancelFlag::new();
    let guard = cancel.on_drop();
    let created = now_secs();
    let chunk = move |job: &TextJob, i: usize, piece: Option<&str>, finish: Option<&str>| {
        let choice = if job.chat {
            let delta = match piece {
                Some(p) => json!({ "content": p }),
                None if finish.is_none() => json!({ "role": "assistant", "content": "" }),
                None => json!({}),
            };
            json!({ "index": i, "delta": delta, "logprobs": null, "finish_reason": finish })
        } else {
            json!({ "index": i, "text": piece.unwrap_or(""), "logprobs": null, "finish_reason": finish })
        };
        event(&json!({
            "id": job.id,
            "object": if job.chat { "chat.completion.chunk" } else { "text_completion" },
            "created": created,
            "model": job.model,
            "choices": [choice],
        }))
    };
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        if job.chat {
            for i in 0..job.n {
                if tx.blocking_send(chunk(&job, i, None, None)).is_err() {
                    return;
                }
            }
        }
        let mut sink =
            |i: usize, piece: &str| tx.blocking_send(chunk(&job, i, Some(piece), None)).is_ok();
        match run_choices(&job, &s, &cancel, deadline, &mut sink) {
            Ok((choices, _)) => {
                for (i, c) in choices.iter().enumerate() {
                    let _ = tx.blocking_send(chunk(&job, i, None, Some(c.finish_reason)));
                }
            }
            Err(RunError::Cancelled) => return,
            Err(e) => {
                let _ = tx.blocking_send(event(&run_error(e).body()));
            }
        }
        let _ = tx.blocking_send(Bytes::from_static(b"data: [DONE]\n\n"));
    });
    // The body owns the receiver and the guard: when the client disconnects, hyper drops the
    // body, the guard cancels the generation and the next send fails.
    let stream = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(b), (rx, guard)))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

// ---------------------------------------------------------------- images

#[derive(Deserialize)]
struct ImageRequest {
    model: String,
    prompt: String,
    n: Option<i64>,
    size: Option<String>,
    response_format: Option<String>,
    seed: Option<i64>,
}

pub(crate) async fn images(
    State(s): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ImageRequest = parse(body)?;
    let model = lookup(&s, &req.model)?;
    let Model::Image(generator) = model else {
        return Err(wrong_task(&req.model, model, "an image model"));
    };
    let generator: Arc<dyn ImageGenerator> = generator.clone();
    let n = req.n.unwrap_or(1);
    if !(1..=MAX_IMAGES).contains(&n) {
        return Err(ApiError::out_of_range(
            "n",
            n,
            &format!("1 to {MAX_IMAGES}"),
        ));
    }
    match req.response_format.as_deref() {
        None | Some("b64_json") => {}
        Some(other) => {
            return Err(ApiError::invalid(
                Some("response_format"),
                format!(
                    "response_format {other:?} is not supported: this server answers b64_json only"
                ),
            ))
        }
    }
    let native = size_str(generator.size());
    if let Some(size) = &req.size {
        if *size != native {
            return Err(ApiError::invalid(
                Some("size"),
                format!("this model draws {native} images, not {size}"),
            ));
        }
    }
    if req.prompt.chars().count() > 4000 {
        return Err(ApiError::invalid(
            Some("prompt"),
            "the prompt is longer than 4000 characters",
        ));
    }
    let number = s.counter.fetch_add(1, Ordering::Relaxed);
    let seed = req.seed.map_or(number, |v| v as u64);
    let deadline = Instant::now() + s.config.timeout();
    let slot = Gate::enter(&s, deadline).await?;
    let cancel = CancelFlag::new();
    let guard = cancel.on_drop();
    let work = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        generator.generate(&req.prompt, n as usize, seed, &cancel)
    });
    let pngs = tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| timeout_error())?
        .map_err(join_error)??;
    guard.disarm();
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: Vec<Value> = pngs
        .iter()
        .map(|p| json!({ "b64_json": b64.encode(p) }))
        .collect();
    Ok(Json(json!({ "created": now_secs(), "data": data })).into_response())
}

// ---------------------------------------------------------------- predictions

#[derive(Deserialize)]
struct PredictRequest {
    model: String,
    rows: Option<Vec<Value>>,
    image: Option<String>,
    images: Option<Vec<String>>,
    pixel_max: Option<f64>,
}

fn cell(v: &Value, row: usize, feature: &str) -> Result<f64, ApiError> {
    let bad = || {
        ApiError::invalid(
            Some("rows"),
            format!(
                "row {row}, feature {feature:?}: expected a number (or null for missing), got {v}"
            ),
        )
    };
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(bad),
        Value::Null => Ok(f64::NAN),
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

fn table(rows: &[Value], features: &[String]) -> Result<Array2<f64>, ApiError> {
    let f = features.len();
    let mut x = Array2::zeros((rows.len(), f));
    for (r, row) in rows.iter().enumerate() {
        match row {
            Value::Array(cells) => {
                if cells.len() != f {
                    return Err(ApiError::invalid(Some("rows"), format!("row {r} has {} values; the model takes {f} ({})", cells.len(), features.join(", "))));
                }
                for (c, v) in cells.iter().enumerate() {
                    x[[r, c]] = cell(v, r, &features[c])?;
                }
            }
            Value::Object(map) => {
                if let Some(k) = map.keys().find(|k| !features.contains(k)) {
                    return Err(ApiError::invalid(Some("rows"), format!("row {r}: unknown feature {k:?}; the model takes {}", features.join(", "))));
                }
                for (c, name) in features.iter().enumerate() {
                    let v = map.get(name).ok_or_else(|| {
                        ApiError::invalid(Some("rows"), format!("row {r}: feature {name:?} is missing"))
                    })?;
                    x[[r, c]] = cell(v, r, name)?;
                }
            }
            other => {
                return Err(ApiError::invalid(Some("rows"), format!("row {r}: expected an array of numbers or an object keyed by feature name, got {other}")))
            }
        }
    }
    Ok(x)
}

fn decode_images(
    p: &dyn Predictor,
    images: &[String],
    pixel_max: f64,
) -> Result<Array2<f64>, ApiError> {
    let InputKind::Image {
        channels,
        height,
        width,
    } = p.info().input
    else {
        return Err(ApiError::invalid(
            Some("image"),
            "this model takes table rows, not images: send rows",
        ));
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut x = Array2::zeros((images.len(), channels * height * width));
    for (r, img) in images.iter().enumerate() {
        let data = img.split_once("base64,").map_or(img.as_str(), |(_, d)| d);
        let bytes = b64.decode(data.trim()).map_err(|e| {
            ApiError::invalid(Some("image"), format!("image {r} is not valid base64: {e}"))
        })?;
        let row = image_row(&bytes, channels, height, width, pixel_max)?;
        x.row_mut(r).assign(&ndarray::ArrayView1::from(&row));
    }
    Ok(x)
}

pub(crate) async fn predict(
    State(s): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: PredictRequest = parse(body)?;
    let model = lookup(&s, &req.model)?;
    let Model::Predict(p) = model else {
        return Err(wrong_task(&req.model, model, "a predict model"));
    };
    let p = p.clone();
    let mut images = req.images.unwrap_or_default();
    images.extend(req.image);
    let pixel_max = req.pixel_max.unwrap_or(255.0);
    if !(pixel_max > 0.0 && pixel_max.is_finite()) {
        return Err(ApiError::out_of_range(
            "pixel_max",
            pixel_max,
            "a finite number > 0",
        ));
    }
    let n = req.rows.as_ref().map_or(0, Vec::len) + images.len();
    if n == 0 || (req.rows.is_some() && !images.is_empty()) {
        return Err(ApiError::invalid(
            Some("rows"),
            "send either rows (a non-empty list) or image/images, not both",
        ));
    }
    if n > MAX_ROWS {
        return Err(ApiError::out_of_range(
            "rows",
            n,
            &format!("at most {MAX_ROWS} rows per request"),
        ));
    }
    let deadline = Instant::now() + s.config.timeout();
    let slot = Gate::enter(&s, deadline).await?;
    let rows = req.rows;
    let pp = p.clone();
    let work = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let _slot = slot;
        let x = match &rows {
            Some(rows) => table(rows, &pp.info().features)?,
            None => decode_images(pp.as_ref(), &images, pixel_max)?,
        };
        Ok(pp.predict(x.view())?)
    });
    let pred = tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| timeout_error())?
        .map_err(join_error)??;
    let info = p.info();
    let mut out = json!({ "object": "prediction", "model": req.model, "target": info.target });
    match &info.classes {
        Some(classes) => {
            let idx: Vec<usize> = pred.values.iter().map(|&v| v as usize).collect();
            out["predictions"] = json!(idx
                .iter()
                .map(|&i| classes.get(i).cloned().unwrap_or_default())
                .collect::<Vec<_>>());
            out["class_indices"] = json!(idx);
            out["classes"] = json!(classes);
        }
        None => out["predictions"] = json!(pred.values.to_vec()),
    }
    if let Some(proba) = pred.probabilities {
        out["probabilities"] = json!(proba
            .rows()
            .into_iter()
            .map(|r| r.to_vec())
            .collect::<Vec<_>>());
    }
    Ok(Json(out).into_response())
}
