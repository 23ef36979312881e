//! The routes under `/v1/` and `/metrics`, the request bodies and their checks, and the
//! JSON error body every refusal carries: `{"error": {"code", "message", "field"}}`.

use super::worker::{Gen, Job};
use super::State;
use crate::task::lm::SamplingOptions;
use crate::task::translate::DecodingOptions;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State as Axs};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

type Shared = Arc<State>;

pub fn router(state: Shared) -> Router {
    let limit = state.limits.max_body;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/models/{name}/{verb}", post(verb))
        .route("/metrics", get(metrics))
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/style.css",
            get(|| async { page("text/css; charset=utf-8", STYLE) }),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// The page, shipped inside the binary: plain HTML, CSS and a JavaScript module, no build
/// step, nothing fetched from elsewhere.
const PAGE: &str = include_str!("page/index.html");
const APP: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

fn page(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// Routes open without a key: the page itself (it asks for the key) and health.
const OPEN: [&str; 4] = ["/", "/app.js", "/style.css", "/v1/health"];

/// A refusal: status, a short code, the reason and the request field it is about.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
        field: None,
    }
}

/// A library error about one option (its name is the request's field), or any other.
fn field_error(e: crate::error::Error) -> ApiError {
    match e {
        crate::error::Error::Invalid { name, msg } => bad_field(name, msg),
        e => error(StatusCode::BAD_REQUEST, "refused", e.to_string()),
    }
}

fn bad_field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError {
        field: Some(field.into()),
        ..error(StatusCode::BAD_REQUEST, "invalid_field", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "field": self.field}});
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// A handler that panicked answers 500 with the JSON error body; the server goes on.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error while answering this request",
    )
    .into_response()
}

async fn not_found() -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see GET /v1/models and docs/serve.md",
    )
}

/// With a key set, every route but [`OPEN`] needs `Authorization: Bearer KEY`.
async fn auth(Axs(s): Axs<Shared>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !OPEN.contains(&req.uri().path()) && given != Some(key.as_str()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs an API key: send Authorization: Bearer KEY",
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn health(Axs(s): Axs<Shared>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "models": s.models.len()}))
}

async fn models(Axs(s): Axs<Shared>) -> Json<serde_json::Value> {
    let list: Vec<&serde_json::Value> = s.models.values().map(|m| &m.info).collect();
    Json(json!({ "models": list }))
}

async fn metrics(Axs(s): Axs<Shared>) -> impl IntoResponse {
    let depths: Vec<(String, usize)> = s
        .models
        .iter()
        .map(|(n, m)| {
            (
                n.clone(),
                m.queue.depth.load(std::sync::atomic::Ordering::Relaxed),
            )
        })
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&depths),
    )
}

/// A body as `T`: malformed JSON, a wrong type, an unknown or missing field are 400s that
/// name the field; a body over the limit is 413.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is over the server's --max-body",
            )
        } else {
            error(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
        }
    })?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            error(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not JSON: {inner}"),
            )
        } else {
            bad_field(
                if path == "." { "body".into() } else { path },
                inner.to_string(),
            )
        }
    })
}

/// Checks a batch of inputs against the limits; `empty_ok` lets an empty string through
/// (a prompt may be empty).
fn check_inputs(s: &State, inputs: &[String], empty_ok: bool) -> Result<(), ApiError> {
    let l = &s.limits;
    if inputs.is_empty() {
        return Err(bad_field(
            "inputs",
            "an empty list; give at least one input",
        ));
    }
    if inputs.len() > l.max_inputs {
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..bad_field(
                "inputs",
                format!(
                    "{} inputs; this server takes at most {}",
                    inputs.len(),
                    l.max_inputs
                ),
            )
        });
    }
    for (i, t) in inputs.iter().enumerate() {
        if t.is_empty() && !empty_ok {
            return Err(bad_field(format!("inputs[{i}]"), "an empty input"));
        }
        let n = t.chars().count();
        if n > l.max_input_chars {
            return Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..bad_field(
                    format!("inputs[{i}]"),
                    format!(
                        "{n} characters; this server takes at most {}",
                        l.max_input_chars
                    ),
                )
            });
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Inputs {
    inputs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyReq {
    inputs: Vec<String>,
    /// Also each token's share of the pooled vector.
    #[serde(default)]
    weights: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateReq {
    inputs: Vec<String>,
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    #[serde(default)]
    greedy: bool,
    seed: Option<u64>,
    /// Server-sent events, token by token (one input).
    #[serde(default)]
    stream: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TranslateReq {
    inputs: Vec<String>,
    beam: Option<usize>,
    alpha: Option<f32>,
    max_len_a: Option<f32>,
    max_len_b: Option<usize>,
    min_len: Option<usize>,
    n_best: Option<usize>,
    #[serde(default)]
    attention: bool,
    #[serde(default)]
    replace_unk: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceReq {
    text: String,
}

/// `POST /v1/models/{name}/{verb}`: the verb run on the model, timed into the metrics.
async fn verb(
    Axs(s): Axs<Shared>,
    Path((name, verb)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let r = match run(&s, &name, &verb, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let known = s.models.contains_key(&name);
    s.metrics.request(
        if known { &name } else { "?" },
        &verb,
        r.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    r
}

/// Sends a job to the model's worker and waits for its answer.
async fn ask<T>(
    s: &State,
    name: &str,
    job: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Job,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    submit(s, name, job(tx))?;
    // On a timeout `rx` is dropped, so the worker skips the job if it has not started, and
    // a generation stops at its next token.
    let limit = s.limits.timeout;
    let answer = if limit.is_zero() {
        rx.await
    } else {
        tokio::time::timeout(limit, rx).await.map_err(|_| {
            error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "not answered within {} ms (--timeout-ms); send fewer or shorter inputs",
                    limit.as_millis()
                ),
            )
        })?
    };
    match answer {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(msg)) if msg.starts_with("internal error") => {
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg))
        }
        Ok(Err(msg)) => Err(error(StatusCode::BAD_REQUEST, "refused", msg)),
        Err(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the model's worker stopped",
        )),
    }
}

fn submit(s: &State, name: &str, job: Job) -> Result<(), ApiError> {
    s.models[name].queue.submit(job).map_err(|_| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("model {name}'s queue is full; retry after a second"),
        )
    })
}

async fn run(
    s: &State,
    name: &str,
    verb: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let model = s.models.get(name).ok_or_else(|| ApiError {
        field: Some("model".into()),
        ..error(
            StatusCode::NOT_FOUND,
            "unknown_model",
            format!("no model named {name:?}; GET /v1/models lists them"),
        )
    })?;
    let task = model.task;
    let wrong = || {
        error(
            StatusCode::BAD_REQUEST,
            "wrong_task",
            format!("model {name} (task {task}) does not {verb}"),
        )
    };
    match (verb, task) {
        ("trace", _) => {
            let r: TraceReq = parse(body)?;
            check_inputs(s, std::slice::from_ref(&r.text), false).map_err(|mut e| {
                e.field = Some("text".into());
                e
            })?;
            let t = ask(s, name, |tx| Job::Trace(r.text, tx)).await?;
            Ok(Json(t).into_response())
        }
        ("classify", "classify") => {
            let r: ClassifyReq = parse(body)?;
            check_inputs(s, &r.inputs, false)?;
            let results: Vec<serde_json::Value> = if r.weights {
                ask(s, name, |tx| Job::ClassifyWeights(r.inputs, tx))
                    .await?
                    .into_iter()
                    .map(|(p, w)| json!({"label": p.label, "prob": p.prob, "probs": p.probs, "weights": w}))
                    .collect()
            } else {
                ask(s, name, |tx| Job::Classify(r.inputs, tx))
                    .await?
                    .into_iter()
                    .map(|p| json!({"label": p.label, "prob": p.prob, "probs": p.probs}))
                    .collect()
            };
            let labels = &model.info["labels"];
            Ok(Json(json!({"labels": labels, "results": results})).into_response())
        }
        ("tag", "tag") => {
            let r: Inputs = parse(body)?;
            check_inputs(s, &r.inputs, false)?;
            let out = ask(s, name, |tx| Job::Tag(r.inputs, tx)).await?;
            Ok(Json(json!({ "results": out })).into_response())
        }
        ("translate", "translate") => {
            let r: TranslateReq = parse(body)?;
            check_inputs(s, &r.inputs, false)?;
            let d = DecodingOptions {
                beam: r.beam,
                alpha: r.alpha,
                max_len_a: r.max_len_a,
                max_len_b: r.max_len_b,
                min_len: r.min_len,
                n_best: r.n_best,
                attention: r.attention,
                replace_unk: r.replace_unk,
            }
            .resolve()
            .map_err(field_error)?;
            if d.beam > s.limits.max_beam {
                return Err(bad_field(
                    "beam",
                    format!(
                        "expected 1 to {} (--max-beam), got {}",
                        s.limits.max_beam, d.beam
                    ),
                ));
            }
            // The length cap a·|x| + b bounds each translation's compute.
            if d.max_len_a > 10.0 {
                return Err(bad_field(
                    "max_len_a",
                    format!("at most 10, got {}", d.max_len_a),
                ));
            }
            if d.max_len_b > s.limits.max_generate {
                return Err(bad_field(
                    "max_len_b",
                    format!(
                        "at most {} (--max-generate), got {}",
                        s.limits.max_generate, d.max_len_b
                    ),
                ));
            }
            let out = ask(s, name, |tx| Job::Translate(r.inputs, d, tx)).await?;
            Ok(Json(json!({ "results": out })).into_response())
        }
        ("generate", "lm") => {
            let r: GenerateReq = parse(body)?;
            check_inputs(s, &r.inputs, true)?;
            let sampling = SamplingOptions {
                temperature: r.temperature,
                top_k: r.top_k,
                top_p: r.top_p,
                greedy: r.greedy,
            }
            .resolve()
            .map_err(field_error)?;
            let g = Gen {
                max_tokens: r
                    .max_tokens
                    .unwrap_or(crate::task::lm::MAX_TOKENS.min(s.limits.max_generate)),
                sampling,
                seed: r.seed.unwrap_or(crate::task::lm::SEED),
            };
            if g.max_tokens > s.limits.max_generate {
                return Err(bad_field(
                    "max_tokens",
                    format!(
                        "at most {} (--max-generate), got {}",
                        s.limits.max_generate, g.max_tokens
                    ),
                ));
            }
            if r.stream {
                if r.inputs.len() != 1 {
                    return Err(bad_field("inputs", "a stream takes exactly one input"));
                }
                return stream(s, name, r.inputs.into_iter().next().unwrap_or_default(), g);
            }
            let out = ask(s, name, |tx| Job::Generate(r.inputs, g, tx)).await?;
            Ok(Json(json!({ "results": out })).into_response())
        }
        ("generate" | "tag" | "classify" | "translate", _) => Err(wrong()),
        _ => Err(error(
            StatusCode::NOT_FOUND,
            "unknown_verb",
            format!("no verb {verb:?}; expected generate, tag, classify, translate or trace"),
        )),
    }
}

/// Generation as server-sent events: `token` events with `{"text"}`, then `done` (or
/// `error` with `{"message"}`). A client that disconnects closes the channel, which stops generation and
/// frees the model.
fn stream(s: &State, name: &str, prompt: String, g: Gen) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::channel::<Result<Option<String>, String>>(64);
    submit(s, name, Job::Stream(prompt, g, tx))?;
    use tokio_stream::StreamExt;
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(|item| {
        Ok::<Event, std::convert::Infallible>(match item {
            Ok(Some(piece)) => Event::default()
                .event("token")
                .data(json!({ "text": piece }).to_string()),
            Ok(None) => Event::default().event("done").data("{}"),
            Err(e) => Event::default()
                .event("error")
                .data(json!({ "message": e }).to_string()),
        })
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
