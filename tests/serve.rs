//! `rnnkit serve` end to end: the real binary on 127.0.0.1 with port 0, tiny models of every
//! task, every endpoint and every refusal, batching, a full queue, a panic, a client that
//! leaves mid-stream, SIGTERM, authentication, and a bounded mixed load.

mod common;
use common::serve::{models, respond, Server};
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

/// Every endpoint answers, and what it answers equals the CLI's for the same input.
#[test]
fn every_endpoint_answers_as_the_cli_does() {
    let sv = Server::start(&[], &[]);
    let (c, h) = sv.get("/v1/health");
    assert_eq!(c, 200, "{h}");
    let (c, list) = sv.get("/v1/models");
    assert_eq!(c, 200);
    let list: Value = serde_json::from_str(&list).unwrap();
    let tasks: Vec<&str> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["task"].as_str().unwrap())
        .collect();
    assert_eq!(
        tasks,
        ["translate", "lm", "ner", "sst"].map(|n| match n {
            "ner" => "tag",
            "sst" => "classify",
            t => t,
        })
    );
    assert!(
        list["models"][0]["run"]["task"].is_string(),
        "the run's config.json"
    );
    // Generation equals `lm generate` for the same seed; the stream is the same text.
    let (c, g) = sv.post(
        "/v1/models/lm/generate",
        r#"{"inputs": ["the ", "a"], "max_tokens": 30, "seed": 4}"#,
    );
    assert_eq!(c, 200, "{g}");
    let cli = run(&[
        "lm",
        "generate",
        "--model",
        &s(&models()[0].1),
        "--prompt",
        "the ",
        "--max-tokens",
        "30",
        "--seed",
        "4",
        "--json",
        "--threads",
        "1",
    ]);
    assert_eq!(g["results"][0], last_json(&cli)["text"]);
    let resp = ureq::post(&format!("{}/v1/models/lm/generate", sv.url))
        .send_string(r#"{"inputs": ["the "], "max_tokens": 30, "seed": 4, "stream": true}"#)
        .unwrap();
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let body = resp.into_string().unwrap();
    let text: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["text"].as_str().map(String::from))
        .collect();
    assert_eq!(text, g["results"][0].as_str().unwrap());
    assert!(body.contains("event: done"));
    // Tagging, classification and translation.
    let (c, t) = sv.post(
        "/v1/models/ner/tag",
        r#"{"inputs": ["Anna lives in Paris ."]}"#,
    );
    assert_eq!(c, 200, "{t}");
    let r = &t["results"][0];
    assert_eq!(r["tokens"].as_array().unwrap().len(), 5);
    for e in r["entities"].as_array().unwrap() {
        let (a, b) = (
            e["char_start"].as_u64().unwrap() as usize,
            e["char_end"].as_u64().unwrap() as usize,
        );
        assert_eq!(&"Anna lives in Paris ."[a..b], e["text"].as_str().unwrap());
    }
    let (c, k) = sv.post(
        "/v1/models/sst/classify",
        r#"{"inputs": ["a great film", "a awful film"], "weights": true}"#,
    );
    assert_eq!(c, 200, "{k}");
    assert_eq!(k["labels"], json!(["0", "1"]));
    let p: f64 = k["results"][0]["probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((p - 1.0).abs() < 1e-5);
    assert_eq!(k["results"][0]["weights"].as_array().unwrap().len(), 3);
    // The same labels and probabilities as without weights; each text's weights sum to 1.
    let (_, plain) = sv.post(
        "/v1/models/sst/classify",
        r#"{"inputs": ["a great film", "a awful film"]}"#,
    );
    for i in 0..2 {
        let (a, b) = (&k["results"][i], &plain["results"][i]);
        assert_eq!(a["label"], b["label"]);
        for (x, y) in a["probs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["probs"].as_array().unwrap())
        {
            assert!(
                (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-6,
                "{a} {b}"
            );
        }
        let w: f64 = a["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((w - 1.0).abs() < 1e-4, "{a}");
    }
    let (c, tr) = sv.post(
        "/v1/models/de-en/translate",
        r#"{"inputs": ["Ein Hund läuft."], "beam": 2, "n_best": 2, "attention": true}"#,
    );
    assert_eq!(c, 200, "{tr}");
    let hyps = tr["results"][0]["hypotheses"].as_array().unwrap();
    assert_eq!(hyps.len(), 2);
    assert_eq!(
        hyps[0]["attention"].as_array().unwrap().len(),
        hyps[0]["tokens"].as_array().unwrap().len()
    );
    // Trace for every task.
    for (name, kind) in [
        ("lm", "next_tokens"),
        ("ner", "tag_marginals"),
        ("sst", "pooling"),
        ("de-en", "attention"),
    ] {
        let (c, t) = sv.post(
            &format!("/v1/models/{name}/trace"),
            r#"{"text": "Ein Hund ."}"#,
        );
        assert_eq!(c, 200, "{name}: {t}");
        assert_eq!(t["task"]["kind"], kind);
        assert!(
            t["stack"]["dirs"][0]["h"].as_array().unwrap().len()
                >= t["stack"]["hidden"].as_u64().unwrap() as usize
        );
    }
    // The page and its module are served from the binary (no key needed for them).
    for (path, kind, needle) in [
        ("/", "text/html", "app.js"),
        ("/app.js", "text/javascript", "/v1/models"),
        ("/style.css", "text/css", "body"),
    ] {
        let r = ureq::get(&format!("{}{path}", sv.url)).call().unwrap();
        assert!(
            r.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        assert!(r.into_string().unwrap().contains(needle), "{path}");
    }
    let (c, m) = sv.get("/metrics");
    assert_eq!(c, 200);
    assert!(
        m.contains("rnnkit_requests_total{model=\"lm\",verb=\"generate\",status=\"200\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("rnnkit_batch_inputs_count{model=\"sst\"}")
            && m.contains("rnnkit_queue_depth{model=\"ner\"} 0")
    );
}

/// Every refusal is a 4xx with a JSON body naming the field.
#[test]
fn bad_requests_are_4xx_naming_the_field() {
    let sv = Server::start(
        &[
            "--max-inputs",
            "3",
            "--max-input-chars",
            "50",
            "--max-body",
            "2000",
            "--max-generate",
            "100",
            "--max-beam",
            "4",
        ],
        &[],
    );
    let long = "x".repeat(51);
    let big = format!(r#"{{"inputs": ["{}"]}}"#, "y".repeat(3000));
    let cases: Vec<(&str, String, u16, &str, Option<&str>)> = vec![
        (
            "/v1/models/sst/classify",
            "{\"inputs\": [".into(),
            400,
            "malformed_json",
            None,
        ),
        (
            "/v1/models/sst/classify",
            r#"{"inputs": "a film"}"#.into(),
            400,
            "invalid_field",
            Some("inputs"),
        ),
        (
            "/v1/models/sst/classify",
            r#"{"inputs": [1]}"#.into(),
            400,
            "invalid_field",
            Some("inputs[0]"),
        ),
        (
            "/v1/models/sst/classify",
            r#"{"inputs": ["a"], "colour": 1}"#.into(),
            400,
            "invalid_field",
            None,
        ),
        (
            "/v1/models/sst/classify",
            r#"{}"#.into(),
            400,
            "invalid_field",
            None,
        ),
        (
            "/v1/models/sst/classify",
            r#"{"inputs": []}"#.into(),
            400,
            "invalid_field",
            Some("inputs"),
        ),
        (
            "/v1/models/sst/classify",
            r#"{"inputs": ["a", ""]}"#.into(),
            400,
            "invalid_field",
            Some("inputs[1]"),
        ),
        (
            "/v1/models/sst/classify",
            r#"{"inputs": ["a", "b", "c", "d"]}"#.into(),
            413,
            "invalid_field",
            Some("inputs"),
        ),
        (
            "/v1/models/sst/classify",
            format!(r#"{{"inputs": ["{long}"]}}"#),
            413,
            "invalid_field",
            Some("inputs[0]"),
        ),
        ("/v1/models/sst/classify", big, 413, "body_too_large", None),
        (
            "/v1/models/nope/classify",
            r#"{"inputs": ["a"]}"#.into(),
            404,
            "unknown_model",
            Some("model"),
        ),
        (
            "/v1/models/sst/paint",
            r#"{"inputs": ["a"]}"#.into(),
            404,
            "unknown_verb",
            None,
        ),
        (
            "/v1/models/sst/generate",
            r#"{"inputs": ["a"]}"#.into(),
            400,
            "wrong_task",
            None,
        ),
        (
            "/v1/models/lm/generate",
            r#"{"inputs": ["a"], "max_tokens": 101}"#.into(),
            400,
            "invalid_field",
            Some("max_tokens"),
        ),
        (
            "/v1/models/lm/generate",
            r#"{"inputs": ["a"], "temperature": -1}"#.into(),
            400,
            "invalid_field",
            Some("temperature"),
        ),
        (
            "/v1/models/lm/generate",
            r#"{"inputs": ["a"], "top_p": 2}"#.into(),
            400,
            "invalid_field",
            Some("top_p"),
        ),
        (
            "/v1/models/lm/generate",
            r#"{"inputs": ["a", "b"], "stream": true}"#.into(),
            400,
            "invalid_field",
            Some("inputs"),
        ),
        (
            "/v1/models/de-en/translate",
            r#"{"inputs": ["Ein Hund"], "beam": 0}"#.into(),
            400,
            "invalid_field",
            Some("beam"),
        ),
        (
            "/v1/models/de-en/translate",
            r#"{"inputs": ["Ein Hund"], "beam": 5}"#.into(),
            400,
            "invalid_field",
            Some("beam"),
        ),
        (
            "/v1/models/de-en/translate",
            r#"{"inputs": ["Ein Hund"], "beam": 2, "n_best": 3}"#.into(),
            400,
            "invalid_field",
            Some("n_best"),
        ),
        (
            "/v1/models/lm/trace",
            r#"{"text": ""}"#.into(),
            400,
            "invalid_field",
            Some("text"),
        ),
        (
            "/v1/models/lm/trace",
            r#"{"text": "a"}"#.into(),
            200,
            "",
            None,
        ),
        ("/v2/anything", "{}".into(), 404, "not_found", None),
    ];
    for (path, body, status, code, field) in cases {
        let (c, v) = sv.post(path, &body);
        assert_eq!(c, status, "{path} {body:.80}: {v}");
        if status != 200 {
            assert_eq!(v["error"]["code"], code, "{path} {body:.80}: {v}");
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            if let Some(f) = field {
                assert_eq!(v["error"]["field"], f, "{path} {body:.80}: {v}");
            }
        }
    }
}

/// A panic inside one request answers 500; the server goes on serving.
#[test]
fn a_panic_answers_500_and_the_server_goes_on() {
    let sv = Server::start(&[], &[("RNNKIT_TEST_PANIC", "boom")]);
    let (c, v) = sv.post("/v1/models/sst/classify", r#"{"inputs": ["boom"]}"#);
    assert_eq!(c, 500, "{v}");
    assert_eq!(v["error"]["code"], "internal");
    let (c, v) = sv.post("/v1/models/sst/classify", r#"{"inputs": ["a great film"]}"#);
    assert_eq!(c, 200, "{v}");
}

/// With a key, requests need it (health does not); a non-loopback address needs a key or
/// --no-auth (192.0.2.1, TEST-NET-1: refused before any bind, and never bindable here).
#[test]
fn authentication() {
    let sv = Server::start(&["--api-key", "s3cret"], &[]);
    let (c, v) = sv.post("/v1/models/sst/classify", r#"{"inputs": ["a"]}"#);
    assert_eq!(
        (c, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let r = ureq::post(&format!("{}/v1/models/sst/classify", sv.url))
        .set("Authorization", "Bearer s3cret")
        .send_string(r#"{"inputs": ["a"]}"#);
    assert_eq!(respond(r).0, 200);
    assert_eq!(sv.get("/v1/health").0, 200);
    assert_eq!(sv.get("/").0, 200);
    assert_eq!(sv.get("/metrics").0, 401);
    let o = run(&[
        "serve",
        "--model",
        &format!("m={}", models()[2].1.display()),
        "--host",
        "192.0.2.1",
        "--port",
        "0",
    ]);
    assert_user_error(&o, "--api-key");
    let o = run(&[
        "serve",
        "--model",
        "x=/nonexistent.safetensors",
        "--port",
        "0",
    ]);
    assert_user_error(&o, "nonexistent.safetensors");
    let o = run(&["serve", "--model", "nonsense", "--port", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Concurrent requests are batched; a full queue answers 503 with Retry-After, never grows.
#[test]
fn batching_and_a_full_queue() {
    let sv = Server::start(&["--queue", "2", "--max-generate", "1000000"], &[]);
    // Hold the lm's worker: a stream of a million tokens that is never read fills its
    // channel and the socket, and the worker waits on it until the client leaves.
    let stream = ureq::post(&format!("{}/v1/models/lm/generate", sv.url))
        .send_string(r#"{"inputs": ["the "], "max_tokens": 1000000, "stream": true}"#)
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let url = sv.url.clone();
            std::thread::spawn(move || {
                let r = ureq::post(&format!("{url}/v1/models/lm/generate"))
                    .send_string(r#"{"inputs": ["a"], "max_tokens": 5}"#);
                match r {
                    Ok(r) => (r.status(), None),
                    Err(ureq::Error::Status(c, r)) => {
                        (c, r.header("retry-after").map(String::from))
                    }
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    // The queue holds two; the other six are refused at once. Then the stream's client
    // leaves, the worker is free, and the two queued requests are answered.
    std::thread::sleep(Duration::from_millis(500));
    drop(stream);
    let codes: Vec<(u16, Option<String>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let busy = codes
        .iter()
        .filter(|(c, r)| *c == 503 && r.as_deref() == Some("1"))
        .count();
    assert_eq!(busy, 6, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|(c, _)| *c == 200).count(),
        2,
        "{codes:?}"
    );
    drop(sv);
    // Classification requests sent at once run in shared batches (a queue with room; a
    // batch waits up to 50 ms for company).
    let sv = Server::start(&["--max-wait-ms", "50"], &[]);
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let url = sv.url.clone();
            std::thread::spawn(move || {
                respond(
                    ureq::post(&format!("{url}/v1/models/sst/classify"))
                        .send_string(&format!(r#"{{"inputs": ["a great film {i}"]}}"#)),
                )
                .0
            })
        })
        .collect();
    assert!(handles.into_iter().all(|h| h.join().unwrap() == 200));
    let (_, m) = sv.get("/metrics");
    let count = |name: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let (batches, inputs) = (
        count("rnnkit_batch_inputs_count{model=\"sst\"}"),
        count("rnnkit_batch_inputs_sum{model=\"sst\"}"),
    );
    assert_eq!(inputs, 16.0, "{m}");
    assert!(batches < 16.0, "{batches} batches for 16 requests");
}

/// `--timeout-ms`: a request not answered in time gets 504 with a JSON error, and its work
/// is dropped: a queued job is skipped, a running generation stops at its next token.
#[test]
fn a_request_past_its_timeout_answers_504_and_its_work_stops() {
    let sv = Server::start(&["--timeout-ms", "400", "--max-generate", "1000000"], &[]);
    // A generation far longer than the timeout: 504, and the worker stops it.
    let (c, body) = sv.post(
        "/v1/models/lm/generate",
        r#"{"inputs": ["the "], "max_tokens": 1000000}"#,
    );
    assert_eq!(c, 504, "{body}");
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("400 ms"));
    // Held by an unread stream (streams are not timed), the worker cannot take the next
    // request; it times out in the queue and is skipped once the worker is free.
    let stream = ureq::post(&format!("{}/v1/models/lm/generate", sv.url))
        .send_string(r#"{"inputs": ["the "], "max_tokens": 1000000, "stream": true}"#)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (c, body) = sv.post(
        "/v1/models/lm/generate",
        r#"{"inputs": ["a"], "max_tokens": 3}"#,
    );
    assert_eq!(c, 504, "{body}");
    drop(stream);
    let (c, _) = sv.post(
        "/v1/models/lm/generate",
        r#"{"inputs": ["a"], "max_tokens": 3}"#,
    );
    assert_eq!(c, 200);
    let (_, m) = sv.get("/metrics");
    let value = |prefix: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in {m}"))
    };
    assert_eq!(
        value("rnnkit_abandoned_jobs_total{model=\"lm\"} "),
        1,
        "{m}"
    );
    assert!(value("rnnkit_generated_tokens_total{model=\"lm\"} ") < 900_000);
}

/// A client that leaves mid-stream frees the model at once: the next request does not wait
/// for the abandoned generation.
#[test]
fn a_client_leaving_a_stream_frees_the_model() {
    let sv = Server::start(&["--max-generate", "1000000"], &[]);
    let resp = ureq::post(&format!("{}/v1/models/lm/generate", sv.url))
        .send_string(r#"{"inputs": ["the "], "max_tokens": 1000000, "stream": true}"#)
        .unwrap();
    let mut reader = BufReader::new(resp.into_reader());
    let mut line = String::new();
    for _ in 0..4 {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    drop(reader);
    let (c, _) = sv.post(
        "/v1/models/lm/generate",
        r#"{"inputs": ["a"], "max_tokens": 3}"#,
    );
    assert_eq!(c, 200);
    // The request after ran once the stream had stopped: far fewer than a million tokens.
    let (_, m) = sv.get("/metrics");
    let n: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("rnnkit_generated_tokens_total{model=\"lm\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{m}"));
    // (Socket buffers let it run ahead of the client by some 10^4–10^5 tokens.)
    assert!((3..900_000).contains(&n), "{n} tokens generated");
}

/// SIGTERM stops accepting, finishes the request in flight, and exits 0.
#[test]
fn sigterm_finishes_in_flight_requests() {
    let mut sv = Server::start(&["--max-generate", "100000"], &[]);
    let url = sv.url.clone();
    let inflight = std::thread::spawn(move || {
        respond(
            ureq::post(&format!("{url}/v1/models/lm/generate"))
                .send_string(r#"{"inputs": ["the "], "max_tokens": 20000, "greedy": true}"#),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(sv.child.id() as i32, libc::SIGTERM) };
    let (c, v) = inflight.join().unwrap();
    assert_eq!(c, 200);
    assert!(v["results"][0].as_str().is_some_and(|t| !t.is_empty()));
    let status = sv.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    sv.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
}

/// A bounded load: 400 requests from 8 clients, valid and invalid mixed, on loopback; every
/// valid one succeeds, every invalid one gets its 4xx, and memory stays bounded.
#[test]
fn bounded_mixed_load() {
    let sv = Server::start(&[], &[]);
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    };
    let pid = sv.child.id();
    let warm = sv.post("/v1/models/sst/classify", r#"{"inputs": ["a"]}"#).0;
    assert_eq!(warm, 200);
    let before = rss(pid);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let url = sv.url.clone();
            std::thread::spawn(move || {
                let mut bad = 0;
                for i in 0..50 {
                    let (path, body, want) = match (t + i) % 5 {
                        0 => (
                            "sst/classify",
                            format!(r#"{{"inputs": ["a great film {i}"]}}"#),
                            200,
                        ),
                        1 => (
                            "ner/tag",
                            r#"{"inputs": ["Anna lives in Rome ."]}"#.to_string(),
                            200,
                        ),
                        2 => (
                            "de-en/translate",
                            r#"{"inputs": ["Ein Mann läuft."], "beam": 2}"#.to_string(),
                            200,
                        ),
                        3 => ("sst/classify", r#"{"inputs": [}"#.to_string(), 400),
                        _ => ("nope/tag", r#"{"inputs": ["x"]}"#.to_string(), 404),
                    };
                    let (c, v) =
                        respond(ureq::post(&format!("{url}/v1/models/{path}")).send_string(&body));
                    if c != want {
                        bad += 1;
                        eprintln!("{path}: {c} {v}");
                    }
                }
                bad
            })
        })
        .collect();
    let bad: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(bad, 0);
    let after = rss(pid);
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} to {after} kB"
    );
}
