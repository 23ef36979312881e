//! `rnnkit serve`: the library's server ([`rnnkit::serve`]) with its options.

use super::common::ComputeArgs;
use clap::Args;
use rnnkit::serve::{Config, Limits};
use std::io::Write;
use std::path::PathBuf;

/// Serve models over HTTP (docs/serve.md).
#[derive(Args)]
pub struct ServeArgs {
    /// A model to serve, as NAME=PATH (a checkpoint of any task); repeat for more.
    #[arg(long = "model", value_name = "NAME=PATH", required = true, value_parser = parse_model)]
    pub models: Vec<(String, PathBuf)>,
    /// Address to listen on (beyond loopback, --api-key or --no-auth is required).
    #[arg(long, default_value_t = Config::default().host)]
    pub host: std::net::IpAddr,
    /// Port (0: any free one; the address is printed).
    #[arg(long, default_value_t = Config::default().port)]
    pub port: u16,
    /// Requests must send `Authorization: Bearer KEY`.
    #[arg(long, env = "RNNKIT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Serve beyond loopback without a key.
    #[arg(long)]
    pub no_auth: bool,
    /// Inputs gathered into one batch at most.
    #[arg(long, default_value_t = Config::default().max_batch)]
    pub max_batch: usize,
    /// Milliseconds a batch waits for more requests after its first (0: it takes what is
    /// queued, so a lone request is not delayed; under load batches form by themselves).
    #[arg(long, default_value_t = Config::default().max_wait.as_millis() as u64)]
    pub max_wait_ms: u64,
    /// Jobs waiting for a model at most (beyond: 503 with Retry-After).
    #[arg(long, default_value_t = Config::default().queue)]
    pub queue: usize,
    /// Bytes of a request body at most.
    #[arg(long, default_value_t = Limits::default().max_body)]
    pub max_body: usize,
    /// Inputs in one request at most.
    #[arg(long, default_value_t = Limits::default().max_inputs)]
    pub max_inputs: usize,
    /// Characters of one input at most (which bounds its tokens).
    #[arg(long, default_value_t = Limits::default().max_input_chars)]
    pub max_input_chars: usize,
    /// `max_tokens` of a generation at most.
    #[arg(long, default_value_t = Limits::default().max_generate)]
    pub max_generate: usize,
    /// Beam size at most.
    #[arg(long, default_value_t = Limits::default().max_beam)]
    pub max_beam: usize,
    /// Milliseconds a request may queue and run before it is answered 504 and its work
    /// dropped (0: no limit; streams are not timed).
    #[arg(long, default_value_t = Limits::default().timeout.as_millis() as u64)]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

fn parse_model(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((n, p)) if !n.is_empty() && !p.is_empty() => Ok((n.to_string(), PathBuf::from(p))),
        _ => Err(format!("expected NAME=PATH, got {s:?}")),
    }
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    let cfg = Config {
        models: a.models,
        host: a.host,
        port: a.port,
        api_key: a.api_key.filter(|k| !k.is_empty()),
        no_auth: a.no_auth,
        threads: a.compute.threads,
        precision: a.compute.precision,
        max_batch: a.max_batch,
        max_wait: std::time::Duration::from_millis(a.max_wait_ms),
        queue: a.queue,
        limits: Limits {
            max_body: a.max_body,
            max_inputs: a.max_inputs,
            max_input_chars: a.max_input_chars,
            max_generate: a.max_generate,
            max_beam: a.max_beam,
            timeout: std::time::Duration::from_millis(a.timeout_ms),
        },
    };
    rnnkit::serve::serve(cfg, |addr| {
        // The first line of stdout, so that a script (or a test) can find a port chosen by 0.
        println!("rnnkit serve: listening on http://{addr}");
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}
