//! `kiln serve`: the models of one or more folders behind an OpenAI-compatible HTTP server
//! with a web playground (see the `kiln-server` crate).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use kiln_server::gpt::{GptGenerator, DEFAULT_GPT_ID};
use kiln_server::{KilnImageGenerator, Model, Registry, ServerConfig, DEFAULT_IMAGE_ID};

/// Arguments of `kiln serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// A model folder or `kiln train` run folder to serve (repeatable); its folder name is its
    /// id in requests (GPT-2, char LM, text-to-image, tree, SVM, linear, MLP, CNN). Without
    /// one, kiln's embedded defaults: the Shakespeare GPT as "kiln-shakespeare-gpt" and the
    /// shapes text-to-image model as "kiln-shapes-dalle".
    #[arg(long = "model", value_name = "DIR")]
    models: Vec<PathBuf>,
    /// Address to listen on (loopback by default: pass 0.0.0.0 to accept other machines).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every /v1 route and /metrics.
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Requests running model work at once; more wait in a queue.
    #[arg(long, value_name = "N", default_value_t = 2)]
    max_concurrent: usize,
    /// Requests that may wait for a slot; past that the server answers 429.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_queue: usize,
    /// Largest max_tokens a request may ask for.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_tokens: usize,
    /// Seconds a request may take, queue wait included.
    #[arg(long, value_name = "S", default_value_t = 300.0)]
    timeout: f64,
    /// Largest request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    body_limit: usize,
}

/// Run `kiln serve`.
pub fn run(a: ServeArgs) -> Result<()> {
    let mut registry = Registry::new();
    for dir in &a.models {
        let id = registry
            .add_folder(dir)
            .with_context(|| format!("cannot serve {}", dir.display()))?;
        eprintln!("model {id:?} from {}", dir.display());
    }
    if registry.is_empty() {
        let gpt = GptGenerator::embedded().context(
            "no model to serve: pass --model DIR (a model folder or a `kiln train` run folder); \
             the embedded default GPT could not be loaded",
        )?;
        registry.add(DEFAULT_GPT_ID, Model::Text(Arc::new(gpt)))?;
        eprintln!("model {DEFAULT_GPT_ID:?}: the embedded default GPT (no --model given)");
        let dalle = KilnImageGenerator::embedded()
            .context("the embedded default text-to-image model could not be loaded")?;
        registry.add(DEFAULT_IMAGE_ID, Model::Image(Arc::new(dalle)))?;
        eprintln!(
            "model {DEFAULT_IMAGE_ID:?}: the embedded default text-to-image model (no --model given)"
        );
    }
    let config = ServerConfig {
        api_key: a.api_key,
        max_concurrent: a.max_concurrent,
        max_queue: a.max_queue,
        max_tokens: a.max_tokens,
        timeout_secs: a.timeout,
        body_limit: a.body_limit,
    };
    let app = kiln_server::router(registry, config).context("invalid server settings")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let addr = SocketAddr::new(a.host, a.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "kiln serve: listening on http://{addr} (playground at /, API at /v1; Ctrl-C to stop)"
        );
        kiln_server::serve(listener, app, kiln_server::shutdown_signal())
            .await
            .context("server failed")?;
        eprintln!("kiln serve: stopped");
        Ok(())
    })
}
