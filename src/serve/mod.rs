//! `rnnkit serve`: an HTTP API for models of every task (axum on tokio), documented in
//! docs/serve.md. The models are fixed at start (requests never name files); each has a
//! worker thread that batches concurrent requests ([`worker`]); limits bound every request,
//! and a full queue answers 503 with Retry-After instead of growing. Errors are 4xx with a
//! JSON body naming the field; a panic inside one request answers 500 and the server goes
//! on; SIGTERM (or Ctrl-C) stops accepting, finishes what is in flight and returns.

mod api;
pub mod metrics;
pub mod worker;

use crate::error::{Error, Result};
use crate::task::any::Model;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What each request may ask for at most.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of a request body.
    pub max_body: usize,
    /// Inputs in one request.
    pub max_inputs: usize,
    /// Characters of one input (every tokenizer gives at most one token a character, so
    /// this bounds the tokens too).
    pub max_input_chars: usize,
    /// `max_tokens` of one generation.
    pub max_generate: usize,
    pub max_beam: usize,
    /// How long a request (not a stream) may wait and run before it is answered 504;
    /// zero: no limit.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 1 << 20,
            max_inputs: 64,
            max_input_chars: 10_000,
            max_generate: 1_000,
            max_beam: 10,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A server: its models, address, authentication, batching and limits.
#[derive(Clone, Debug)]
pub struct Config {
    /// (name, checkpoint) of every model served.
    pub models: Vec<(String, PathBuf)>,
    pub host: IpAddr,
    /// 0: any free port (the address bound is printed).
    pub port: u16,
    /// Requests must carry `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// Serve on a non-loopback address without a key (explicitly asked for).
    pub no_auth: bool,
    pub threads: Option<usize>,
    /// The products' number format (`--precision bf16`: AMX or AVX512-BF16 where the CPU
    /// has them), as in every other command.
    pub precision: Option<crate::engine::bf16::Precision>,
    /// Inputs gathered into one batch at most.
    pub max_batch: usize,
    /// How long a batch waits for more requests after its first. 0 (the default) takes
    /// what is queued when the worker is free: a lone request runs at once, and under
    /// load the queue fills while a batch runs, so batches form by themselves.
    pub max_wait: Duration,
    /// Jobs waiting for a model at most (then 503).
    pub queue: usize,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            models: Vec::new(),
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            api_key: None,
            no_auth: false,
            threads: None,
            precision: None,
            max_batch: 32,
            max_wait: Duration::ZERO,
            queue: 256,
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// Refuses what cannot serve: no model, a repeated name, zero sizes, a public address
    /// without a key or the explicit choice of none.
    pub fn check(&self) -> Result<()> {
        if self.models.is_empty() {
            return Err(Error::Usage(
                "no model to serve; give --model NAME=PATH".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, _) in &self.models {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(Error::Usage(format!(
                    "--model {name:?}: a name of letters, digits, '-', '_' or '.'"
                )));
            }
            if !seen.insert(name) {
                return Err(Error::Usage(format!(
                    "--model {name}: the name is given twice"
                )));
            }
        }
        let l = &self.limits;
        if self.max_batch == 0
            || self.queue == 0
            || l.max_body == 0
            || l.max_inputs == 0
            || l.max_input_chars == 0
            || l.max_beam == 0
        {
            return Err(Error::Usage(
                "--max-batch, --queue, --max-body, --max-inputs, --max-input-chars and --max-beam must be at least 1".into(),
            ));
        }
        if l.max_generate > crate::task::lm::MAX_GENERATE {
            return Err(Error::Usage(format!(
                "--max-generate: at most {}",
                crate::task::lm::MAX_GENERATE
            )));
        }
        if !self.host.is_loopback() && self.api_key.is_none() && !self.no_auth {
            return Err(Error::Usage(format!(
                "--host {}: serving beyond this machine needs --api-key KEY (or RNNKIT_API_KEY), or --no-auth to serve without one",
                self.host
            )));
        }
        Ok(())
    }
}

/// A served model: its queue and what `/v1/models` tells of it.
pub struct Served {
    pub task: &'static str,
    pub queue: worker::Queue,
    pub info: serde_json::Value,
}

/// What the handlers share.
pub struct State {
    pub models: BTreeMap<String, Served>,
    pub limits: Limits,
    pub api_key: Option<String>,
    pub metrics: Arc<metrics::Metrics>,
}

/// `/v1/models`' entry of a model: task, checkpoint, config, vocabulary sizes, and the
/// run's config.json when it sits beside the checkpoint.
fn info(name: &str, path: &std::path::Path, model: &Model) -> Result<serde_json::Value> {
    let meta = crate::checkpoint::read_meta(path)?;
    let vocabs: serde_json::Map<String, serde_json::Value> = meta["vocabs"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v["tokens"].as_array().map_or(0, |a| a.len()).into(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let run = path
        .parent()
        .map(|d| d.join(crate::train::CONFIG_FILE))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let params = crate::engine::param::Module::num_params(model.module());
    Ok(serde_json::json!({
        "name": name, "task": model.task(), "path": path, "params": params,
        "config": meta["model"], "vocab_sizes": vocabs,
        "labels": meta["vocabs"]["labels"]["tokens"], "run": run,
    }))
}

/// Loads the models, binds the address, calls `ready` with it, and serves until SIGTERM
/// or Ctrl-C, then finishes the requests in flight and returns.
pub fn serve(cfg: Config, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    cfg.check()?;
    crate::run::Compute {
        threads: cfg.threads,
        precision: cfg.precision,
    }
    .apply();
    let metrics = Arc::new(metrics::Metrics::default());
    let batching = worker::Batching {
        max_batch: cfg.max_batch,
        max_wait: cfg.max_wait,
        queue: cfg.queue,
    };
    let mut models = BTreeMap::new();
    for (name, path) in &cfg.models {
        let model = Model::load(path)?;
        let info = info(name, path, &model)?;
        let task = model.task();
        let queue = worker::start(name.clone(), model, batching, metrics.clone());
        models.insert(name.clone(), Served { task, queue, info });
    }
    let state = Arc::new(State {
        models,
        limits: cfg.limits,
        api_key: cfg.api_key.clone(),
        metrics,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("could not start the server's runtime: {e}")))?;
    rt.block_on(async move {
        let addr = SocketAddr::new(cfg.host, cfg.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Usage(format!("could not listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Usage(format!("{addr}: {e}")))?;
        ready(bound);
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(|e| Error::Usage(format!("server: {e}")))
    })
}

/// Resolves at SIGTERM or Ctrl-C.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
