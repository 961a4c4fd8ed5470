//! # kiln-server: kiln models behind an OpenAI-compatible HTTP API
//!
//! [`router`] builds an axum [`Router`] over a [`Registry`] of models, so the official
//! `openai` clients work unchanged with `base_url = "http://127.0.0.1:8080/v1"`:
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the web playground (one embedded HTML page) |
//! | `GET /health` | `{"status":"ok","models":N}` (no key needed) |
//! | `GET /metrics` | Prometheus text: requests, errors, tokens, queue, latency histograms |
//! | `GET /v1/models` | the served models |
//! | `POST /v1/completions` | prompt, max_tokens, temperature, top_p, top_k, n, stop, seed, stream |
//! | `POST /v1/chat/completions` | messages through the [`text::chat_prompt`] template |
//! | `POST /v1/images/generations` | prompt, n, seed, response_format `b64_json` |
//! | `POST /v1/predict` | rows (arrays or objects keyed by feature) or base64 images |
//!
//! Models are small traits, so a new family joins with one implementation:
//! [`TextGenerator`] (prompt → tokens, with a [`CancelFlag`]), [`ImageGenerator`]
//! (prompt → PNGs) and [`Predictor`] (rows → predictions). [`Registry::add_folder`] loads the
//! kinds kiln saves today: GPT-2 folders (Hugging Face folders and `kiln train gpt` runs),
//! character language models and every classical or network predictor; `kiln serve` with no
//! model serves the embedded Shakespeare GPT.
//!
//! Model work runs on blocking threads, at most [`ServerConfig::max_concurrent`] at a time;
//! up to [`ServerConfig::max_queue`] more requests wait, and further ones get 429. A streamed
//! generation stops when its client disconnects. Errors are OpenAI's
//! `{"error": {"message", "type", "param", "code"}}` objects.
//!
//! ```
//! use kiln_server::{router, Registry, ServerConfig};
//! let app = router(Registry::new(), ServerConfig::default()).unwrap();
//! # let _ = app;
//! ```
#![warn(missing_docs)]

mod api;
pub mod charlm;
pub mod error;
mod gate;
pub mod gpt;
pub mod image;
pub mod image_model;
pub mod metrics;
pub mod predict;
pub mod registry;
pub mod text;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use error::{ApiError, LoadError, ModelError};
pub use image::ImageGenerator;
pub use image_model::{KilnImageGenerator, DEFAULT_IMAGE_ID};
pub use predict::{Prediction, Predictor, PredictorInfo};
pub use registry::{Model, Registry};
pub use text::{CancelFlag, Flow, SamplingParams, TextGenerator};

/// Server limits.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerConfig {
    /// Bearer token every `/v1/*` and `/metrics` request must carry (default none: open).
    pub api_key: Option<String>,
    /// Requests running model work at once, ≥ 1 (default 2).
    pub max_concurrent: usize,
    /// Requests waiting for a slot before new ones get 429 (default 64).
    pub max_queue: usize,
    /// Largest `max_tokens` a request may ask for, ≥ 1 (default 1024).
    pub max_tokens: usize,
    /// Seconds a request may take, queue wait included, > 0 (default 300).
    pub timeout_secs: f64,
    /// Largest request body in bytes, ≥ 1024 (default 4 MiB).
    pub body_limit: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            max_concurrent: 2,
            max_queue: 64,
            max_tokens: 1024,
            timeout_secs: 300.0,
            body_limit: 4 << 20,
        }
    }
}

impl ServerConfig {
    /// Check every limit, naming the first out of range.
    pub fn validate(&self) -> Result<(), kiln_core::Error> {
        use kiln_core::Error;
        if self.max_concurrent == 0 {
            return Err(Error::param("max_concurrent", 0, "≥ 1"));
        }
        if self.max_tokens == 0 {
            return Err(Error::param("max_tokens", 0, "≥ 1"));
        }
        if !(self.timeout_secs > 0.0 && self.timeout_secs.is_finite()) {
            return Err(Error::param(
                "timeout",
                self.timeout_secs,
                "a finite number of seconds > 0",
            ));
        }
        if self.body_limit < 1024 {
            return Err(Error::param("body_limit", self.body_limit, "≥ 1024 bytes"));
        }
        if self.api_key.as_deref() == Some("") {
            return Err(Error::param("api_key", "\"\"", "a non-empty key"));
        }
        Ok(())
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs)
    }
}

/// What every handler shares.
pub(crate) struct Inner {
    pub config: ServerConfig,
    pub registry: Registry,
    pub metrics: metrics::Metrics,
    pub gate: gate::Gate,
    pub counter: AtomicU64,
}

pub(crate) type State = Arc<Inner>;

/// The application: every route over `registry`, with the limits of `config`.
pub fn router(registry: Registry, config: ServerConfig) -> Result<Router, kiln_core::Error> {
    config.validate()?;
    let state: State = Arc::new(Inner {
        gate: gate::Gate::new(config.max_concurrent, config.max_queue),
        config: config.clone(),
        registry,
        metrics: metrics::Metrics::default(),
        counter: AtomicU64::new(0),
    });
    let protected = Router::new()
        .route("/v1/models", get(api::models))
        .route("/v1/completions", post(api::completions))
        .route("/v1/chat/completions", post(api::chat))
        .route("/v1/images/generations", post(api::images))
        .route("/v1/predict", post(api::predict))
        .route("/metrics", get(api::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::auth,
        ));
    Ok(Router::new()
        .route("/", get(api::playground))
        .route("/health", get(api::health))
        .merge(protected)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::track,
        ))
        .with_state(state))
}

/// Serve `app` on `listener` until `shutdown` resolves, then stop accepting connections and
/// finish the requests in flight (streams included) before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM: the `shutdown` argument of [`serve`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
