//! End-to-end tests: the real `rnnkit` binary on small real data (the first lines of PTB
//! when RNNKIT_DATA_DIR has it, else rnnkit's own README and sources).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rnnkit"))
}

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .env("RNNKIT_THREADS", "2")
        .output()
        .expect("binary runs")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rnnkit-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Small real text: 300 lines of PTB's validation set, or the project's own text.
fn corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::env::var_os("RNNKIT_DATA_DIR")
        .map(|d| PathBuf::from(d).join("ptb/ptb.valid.txt"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            ["README.md", "src/task/lm/model.rs", "src/train.rs"]
                .iter()
                .map(|f| std::fs::read_to_string(root.join(f)).unwrap())
                .collect()
        });
    let lines: Vec<&str> = text.lines().collect();
    let (train, valid) = (
        lines[..300].join("\n") + "\n",
        lines[300..360].join("\n") + "\n",
    );
    let (t, v) = (dir.join("train.txt"), dir.join("valid.txt"));
    std::fs::write(&t, train).unwrap();
    std::fs::write(&v, valid).unwrap();
    (t, v)
}

/// A fresh folder with the small corpus: (run dir, train, valid, run dir as text).
fn run_dir(name: &str) -> (PathBuf, String, String, String) {
    let d = tmp(name);
    let (t, v) = corpus(&d);
    let out = d.join("run");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    (out.clone(), s(&t), s(&v), s(&out))
}

fn last_json(o: &Output) -> serde_json::Value {
    let s = String::from_utf8_lossy(&o.stdout);
    let line = s
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout; stderr: {}", String::from_utf8_lossy(&o.stderr)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}

/// Every tensor of a safetensors file as (name, raw bytes), sorted by name: what
/// "bit-identical weights" compares.
fn tensors(file: &Path) -> Vec<(String, Vec<u8>)> {
    let buf = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&buf).unwrap();
    let mut v: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    v.sort();
    v
}

/// A safetensors file's metadata map.
#[derive(Debug, PartialEq)]
struct SafeMeta(Option<std::collections::HashMap<String, String>>);

impl SafeMeta {
    fn of(buf: &[u8]) -> SafeMeta {
        let (_, m) = safetensors::SafeTensors::read_metadata(buf).unwrap();
        SafeMeta(m.metadata().clone())
    }
}

fn train_args<'a>(t: &'a str, v: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "lm",
        "train",
        "--train",
        t,
        "--valid",
        v,
        "--tokenizer",
        "word",
        "--embed",
        "16",
        "--hidden",
        "16",
        "--layers",
        "2",
        "--batch-size",
        "4",
        "--bptt",
        "8",
        "--optim",
        "adam",
        "--lr",
        "0.01",
        "--dropout",
        "0.1",
        "--out",
        out,
        "--quiet",
        "--json",
        "--log-every",
        "5",
        "--seed",
        "3",
    ]
}

#[test]
fn help_on_every_command() {
    for args in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["lm", "--help"],
        vec!["lm", "train", "--help"],
        vec!["lm", "eval", "--help"],
        vec!["lm", "generate", "--help"],
        vec!["bench", "lm", "--help"],
        vec!["bench", "generate", "--help"],
        vec!["tokenizer", "train", "--help"],
        vec!["tokenizer", "stats", "--help"],
        vec!["data", "list", "--help"],
        vec!["tag", "--help"],
        vec!["tag", "train", "--help"],
        vec!["tag", "eval", "--help"],
        vec!["tag", "predict", "--help"],
        vec!["tag", "score", "--help"],
        vec!["classify", "train", "--help"],
        vec!["classify", "eval", "--help"],
        vec!["classify", "predict", "--help"],
        vec!["translate", "score", "--help"],
        vec!["translate", "train", "--help"],
        vec!["translate", "eval", "--help"],
        vec!["translate", "predict", "--help"],
        vec!["bench", "tag", "--help"],
        vec!["bench", "classify", "--help"],
        vec!["plot", "--help"],
        vec!["convert", "--help"],
    ] {
        let o = run(&args);
        assert!(o.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn train_eval_generate_and_outputs() {
    let (out, ts, vs, os) = run_dir("train");
    let (vs, os) = (vs.as_str(), os.as_str());
    let mut args = train_args(&ts, vs, os);
    args.extend(["--epochs", "2"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = last_json(&o);
    let first_loss: f64 = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .next()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .unwrap();
    assert!(
        s["valid_loss"].as_f64().unwrap() < first_loss,
        "validation loss {} did not fall below the first logged train loss {first_loss}",
        s["valid_loss"]
    );
    for f in [
        "model.safetensors",
        "train_state.safetensors",
        "metrics.jsonl",
        "loss.png",
        "summary.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let png = std::fs::read(out.join("loss.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let model = out.join("model.safetensors");
    let o = run(&[
        "lm",
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        vs,
        "--json",
        "--batch-size",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = last_json(&o);
    assert!(
        (e["ppl"].as_f64().unwrap() - e["loss"].as_f64().unwrap().exp()).abs()
            < 1e-6 * e["ppl"].as_f64().unwrap()
    );
    assert!(e["tokens"].as_u64().unwrap() > 100);
    let o = run(&[
        "lm",
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--max-tokens",
        "12",
        "--seed",
        "5",
        "--json",
    ]);
    assert!(o.status.success());
    let g = last_json(&o);
    assert_eq!(g["tokens"], 12);
    let o2 = run(&[
        "lm",
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--max-tokens",
        "12",
        "--seed",
        "5",
        "--json",
    ]);
    assert_eq!(last_json(&o2)["text"], g["text"], "same seed, same sample");
}

/// The layer-normalised LSTM trains, evaluates (the loss `lm eval` computes from the saved
/// file equals the one training reported) and generates; other cells are refused with it.
#[test]
fn layer_normalised_lstm_end_to_end() {
    let (out, ts, vs, os) = run_dir("cellnorm");
    let (ts, vs, os) = (ts.as_str(), vs.as_str(), os.as_str());
    let mut args = train_args(ts, vs, os);
    args.extend(["--epochs", "2", "--cell-norm"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let valid = last_json(&o)["valid_loss"].as_f64().unwrap();
    let model = out.join("model.safetensors");
    let m = model.to_str().unwrap();
    let o = run(&["lm", "eval", "--model", m, "--data", vs, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = last_json(&o)["loss"].as_f64().unwrap();
    assert!(
        (e - valid).abs() < 1e-4 * valid,
        "eval {e} vs training's {valid}"
    );
    let o = run(&[
        "lm",
        "generate",
        "--model",
        m,
        "--max-tokens",
        "8",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(last_json(&o)["tokens"], 8);
    let mut args = train_args(ts, vs, os);
    args.extend(["--cell", "gru", "--cell-norm"]);
    assert_user_error(&run(&args), "implemented for lstm, not gru");
}

/// A run stopped part-way and resumed ends with the same weights as an uninterrupted run.
#[test]
fn resume_matches_uninterrupted_run() {
    let d = tmp("resume");
    let (t, v) = corpus(&d);
    let (a, b) = (d.join("a"), d.join("b"));
    let (ts, vs) = (t.to_str().unwrap(), v.to_str().unwrap());
    let mut args = train_args(ts, vs, a.to_str().unwrap());
    args.extend(["--epochs", "2"]);
    assert!(run(&args).status.success());
    let mut args = train_args(ts, vs, b.to_str().unwrap());
    args.extend(["--epochs", "2", "--max-tokens", "700"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    resume_ends_where(&b, &a, &[]);
}

/// Resumes the stopped run in `b` and checks that its train state equals `a`'s (an
/// uninterrupted run), tensor for tensor, bit for bit.
fn resume_ends_where(b: &Path, a: &Path, more: &[&str]) {
    let mut args = vec![
        "lm",
        "train",
        "--resume",
        b.to_str().unwrap(),
        "--quiet",
        "--json",
    ];
    args.extend(more);
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let state = "train_state.safetensors";
    let (ta, tb) = (tensors(&a.join(state)), tensors(&b.join(state)));
    assert_eq!(ta.len(), tb.len());
    for ((na, da), (nb, db)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert!(da == db, "tensor {na} differs after resume");
    }
}

/// `--resume` keeps the run's thread count (the products split their sums by it, so
/// another count would not continue bit for bit) and takes a new `--epochs`, so a
/// finished run trains on: 2 epochs resumed to 3 end where 3 epochs in one go end.
#[test]
fn resume_keeps_threads_and_trains_on_to_more_epochs() {
    let d = tmp("more-epochs");
    let (t, v) = corpus(&d);
    let (a, b) = (d.join("a"), d.join("b"));
    let (ts, vs) = (t.to_str().unwrap(), v.to_str().unwrap());
    for (out, epochs) in [(&a, "3"), (&b, "2")] {
        let mut args = train_args(ts, vs, out.to_str().unwrap());
        args.extend(["--epochs", epochs, "--threads", "2"]);
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    resume_ends_where(&b, &a, &["--epochs", "3"]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["threads"], 2);
    assert_eq!(config["run"]["train"]["threads"], 2);
    assert_eq!(config["run"]["train"]["epochs"], 3);
    let mut args = train_args(ts, vs, a.to_str().unwrap());
    args.extend(["--threads", "0", "--overwrite"]);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("thread count from 1 to 1024"));
}

fn assert_user_error(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(
        err.contains(needle),
        "stderr {err:?} should mention {needle:?}"
    );
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one-line error expected: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    let d = tmp("bad");
    let (t, v) = corpus(&d);
    let bad = d.join("bad.txt");
    std::fs::write(&bad, b"fine line\nbad \xff\xfe bytes\n").unwrap();
    let empty = d.join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    let out = d.join("o");
    let os = out.to_str().unwrap();
    assert_user_error(
        &run(&[
            "lm",
            "train",
            "--train",
            bad.to_str().unwrap(),
            "--out",
            os,
            "--quiet",
        ]),
        "bad.txt:2: invalid UTF-8 at byte offset 14",
    );
    assert_user_error(
        &run(&[
            "lm",
            "train",
            "--train",
            empty.to_str().unwrap(),
            "--out",
            os,
            "--quiet",
        ]),
        "empty",
    );
    assert_user_error(
        &run(&[
            "lm",
            "train",
            "--train",
            "/nonexistent/x.txt",
            "--out",
            os,
            "--quiet",
        ]),
        "/nonexistent/x.txt",
    );
    let mut args = train_args(t.to_str().unwrap(), v.to_str().unwrap(), os);
    args.push("--bidirectional");
    assert_user_error(&run(&args), "bidirectional");
    let mut args = train_args(t.to_str().unwrap(), v.to_str().unwrap(), os);
    args.extend(["--embed-init", "zeros"]);
    assert_user_error(&run(&args), "expected word-lm or torch-default");
    let mut args = train_args(t.to_str().unwrap(), v.to_str().unwrap(), os);
    args.extend(["--init", "uniform:0.1", "--embed-init", "torch-default"]);
    assert_user_error(&run(&args), "sets every weight");
    // A truncated checkpoint and a file that is not one.
    let mut args = train_args(t.to_str().unwrap(), v.to_str().unwrap(), os);
    args.extend(["--epochs", "1"]);
    assert!(run(&args).status.success());
    let full = std::fs::read(out.join("model.safetensors")).unwrap();
    let cut = d.join("cut.safetensors");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    assert_user_error(
        &run(&[
            "lm",
            "eval",
            "--model",
            cut.to_str().unwrap(),
            "--data",
            v.to_str().unwrap(),
        ]),
        "cut.safetensors",
    );
    assert_user_error(
        &run(&["lm", "generate", "--model", t.to_str().unwrap()]),
        "not a safetensors file",
    );
    // A hostile header: a huge declared length must not be allocated.
    let hostile = d.join("hostile.safetensors");
    let mut h = (u64::MAX / 2).to_le_bytes().to_vec();
    h.extend_from_slice(b"{}");
    std::fs::write(&hostile, h).unwrap();
    assert_user_error(
        &run(&[
            "lm",
            "eval",
            "--model",
            hostile.to_str().unwrap(),
            "--data",
            v.to_str().unwrap(),
        ]),
        "hostile.safetensors",
    );
}

#[test]
fn bench_reports_json() {
    let o = run(&[
        "bench",
        "lm",
        "--cell",
        "gru",
        "--hidden",
        "32",
        "--vocab",
        "50",
        "--batch-size",
        "4",
        "--bptt",
        "10",
        "--steps",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(last_json(&o)["tokens_per_s"].as_f64().unwrap() > 0.0);
    let o = run(&[
        "bench", "generate", "--hidden", "32", "--vocab", "50", "--steps", "50", "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(last_json(&o)["tokens_per_s"].as_f64().unwrap() > 0.0);
}

/// A model exported from PyTorch (tools/torch_lm_checkpoint.py fixture) gives the loss that
/// PyTorch computed on the same text, to 1e-4 relative.
#[test]
fn pytorch_exported_model_gives_pytorch_loss() {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("torch_lm.json")).unwrap()).unwrap();
    let o = run(&[
        "lm",
        "eval",
        "--model",
        fx.join("torch_lm.safetensors").to_str().unwrap(),
        "--data",
        fx.join("torch_lm.txt").to_str().unwrap(),
        "--batch-size",
        "2",
        "--bptt",
        "35",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = last_json(&o);
    let (g, w) = (
        got["loss"].as_f64().unwrap(),
        want["loss"].as_f64().unwrap(),
    );
    assert!((g - w).abs() <= 1e-4 * w, "rnnkit {g} vs PyTorch {w}");
    assert_eq!(got["tokens"], want["tokens"]);
}

/// The same seed and thread count give bit-identical training.
#[test]
fn same_seed_same_weights() {
    let d = tmp("determinism");
    let (t, v) = corpus(&d);
    let (a, b) = (d.join("a"), d.join("b"));
    for out in [&a, &b] {
        let mut args = train_args(
            t.to_str().unwrap(),
            v.to_str().unwrap(),
            out.to_str().unwrap(),
        );
        args.extend(["--epochs", "1", "--threads", "2"]);
        assert!(run(&args).status.success());
    }
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(b.join("model.safetensors")).unwrap()
    );
}

/// Pretrained vectors fill the embedding rows they cover, and a frozen table stays put.
#[test]
fn pretrained_frozen_embeddings() {
    let d = tmp("pretrained");
    let (t, v) = corpus(&d);
    let words: Vec<String> = std::fs::read_to_string(&t)
        .unwrap()
        .split_whitespace()
        .take(50)
        .map(String::from)
        .collect();
    let mut vec_text = format!("{} 16\n", words.len());
    for (i, w) in words.iter().enumerate() {
        vec_text.push_str(&format!(
            "{w}{}\n",
            (0..16)
                .map(|j| format!(" {}", ((i * 16 + j) % 7) as f32 * 0.1))
                .collect::<String>()
        ));
    }
    let vp = d.join("vec.txt");
    std::fs::write(&vp, vec_text).unwrap();
    let out = d.join("o");
    let mut args = train_args(
        t.to_str().unwrap(),
        v.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    args.extend([
        "--epochs",
        "1",
        "--pretrained",
        vp.to_str().unwrap(),
        "--freeze-embeddings",
    ]);
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let buf = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&buf).unwrap();
    let meta: serde_json::Value = serde_json::from_str(
        &safetensors::SafeTensors::read_metadata(&buf)
            .unwrap()
            .1
            .metadata()
            .as_ref()
            .unwrap()["rnnkit"],
    )
    .unwrap();
    let vocab: Vec<String> =
        serde_json::from_value(meta["vocabs"]["tokens"]["tokens"].clone()).unwrap();
    let emb = st.tensor("encoder.weight").unwrap();
    let row = |id: usize| -> Vec<f32> {
        emb.data()[id * 64..(id + 1) * 64]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let (i, w) = words
        .iter()
        .enumerate()
        .find(|(_, w)| vocab.contains(w))
        .unwrap();
    let id = vocab.iter().position(|x| x == w).unwrap();
    // `i` is the word's first line in the vector file, the one the reader keeps.
    let want: Vec<f32> = (0..16).map(|j| ((i * 16 + j) % 7) as f32 * 0.1).collect();
    assert_eq!(
        row(id),
        want,
        "the frozen pretrained row must come through training unchanged"
    );
}

/// Every reader's bad input reaches the user as a one-line error with exit status 2.
#[test]
fn readers_report_bad_input_from_the_cli() {
    let d = tmp("readers");
    let w = |name: &str, body: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let ragged = w("ragged.conll", b"EU NNP B-ORG\nrejects O\n");
    assert_user_error(
        &run(&["data", "check", "--format", "conll", &ragged]),
        "ragged.conll:2: 2 columns; expected 3",
    );
    let badtag = w("tags.conll", b"a O\nb I-PER\n");
    assert_user_error(
        &run(&[
            "data", "check", "--format", "conll", "--scheme", "bio", &badtag,
        ]),
        "tags.conll:2: I-PER cannot follow O",
    );
    assert_user_error(
        &run(&[
            "data", "check", "--format", "conll", "--scheme", "bilou9", &badtag,
        ]),
        "unknown tag scheme",
    );
    let good = run(&[
        "data",
        "check",
        "--format",
        "conll",
        "--scheme",
        "bio",
        "--json",
        &w("ok.conll", b"a B-PER\nb I-PER\n\nc O\n"),
    ]);
    assert!(good.status.success());
    assert_eq!(last_json(&good)["sentences"], 2);
    let (en, de) = (w("x.en", b"a\nb\nc\n"), w("x.de", b"a\nb\n"));
    assert_user_error(
        &run(&["data", "check", "--format", "parallel", &en, &de]),
        "line-aligned",
    );
    assert_user_error(
        &run(&[
            "data",
            "check",
            "--format",
            "labelled",
            &w("l.tsv", b"text\tlabel\nx\t1\n"),
        ]),
        "l.tsv:1:",
    );
    assert_user_error(
        &run(&[
            "data",
            "check",
            "--format",
            "vectors",
            &w("v.txt", b"a 1 2\nb 1\n"),
        ]),
        "v.txt:2:",
    );
    assert_user_error(
        &run(&["data", "check", "--format", "text", &w("e.txt", b"")]),
        "empty",
    );
    assert_user_error(
        &run(&[
            "data",
            "check",
            "--format",
            "text",
            &w("u.txt", b"ok\n\xff"),
        ]),
        "u.txt:2: invalid UTF-8 at byte offset 3",
    );
    assert_user_error(
        &run(&[
            "tokenizer",
            "train",
            "--kind",
            "bpe",
            "--out",
            d.join("t.json").to_str().unwrap(),
            &w("u2.txt", b"\xc3"),
        ]),
        "u2.txt:1:",
    );
    assert_user_error(
        &run(&["tokenizer", "train", "--kind", "words", "--out", "x", &en]),
        "--kind",
    );
    assert_user_error(&run(&["data", "fetch", "nosuchset"]), "unknown dataset");
}

/// Rewrites the `rnnkit` metadata of a checkpoint with `edit`, keeping its tensors.
fn edit_checkpoint(src: &Path, dst: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let buf = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&buf).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&buf).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_str(&md.metadata().as_ref().unwrap()["rnnkit"]).unwrap();
    edit(&mut meta);
    let info = std::collections::HashMap::from([("rnnkit".to_string(), meta.to_string())]);
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    std::fs::write(dst, safetensors::serialize(tensors, &Some(info)).unwrap()).unwrap();
}

/// Checkpoints whose metadata is well-formed JSON but inconsistent (sizes that disagree,
/// another task, a missing vocabulary, a vocabulary of another size than its embedding, a
/// config asking for far more memory than the file holds) are one-line errors with exit 2.
#[test]
fn inconsistent_checkpoints_are_refused_at_load() {
    let (out, ts, vs, os) = run_dir("hostile-ckpt");
    let mut args = train_args(&ts, &vs, &os);
    args.extend(["--epochs", "1"]);
    assert!(run(&args).status.success());
    let good = out.join("model.safetensors");
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 7] = [
        (
            "input",
            |m| m["model"]["rnn"]["input"] = (m["model"]["embed"].as_u64().unwrap() + 1).into(),
            "rnn.input",
        ),
        ("task", |m| m["task"] = "tag".into(), "task"),
        (
            "novocab",
            |m| {
                m["vocabs"].as_object_mut().unwrap().remove("tokens");
            },
            "missing vocabulary",
        ),
        (
            "vocabsize",
            |m| {
                m["vocabs"]["tokens"]["tokens"]
                    .as_array_mut()
                    .unwrap()
                    .push("zzz-extra".into())
            },
            "vocabulary \\\"tokens\\\" has",
        ),
        (
            "huge",
            |m| {
                m["model"]["rnn"]["hidden"] = 65536.into();
                m["model"]["rnn"]["layers"] = 64.into();
            },
            "parameters",
        ),
        (
            "hidden",
            |m| {
                m["model"]["rnn"]["hidden"] =
                    (m["model"]["rnn"]["hidden"].as_u64().unwrap() - 1).into()
            },
            "shape",
        ),
        (
            "version",
            |m| m["format_version"] = 9.into(),
            "format_version",
        ),
    ];
    for (name, edit, needle) in cases {
        let bad = out.join(format!("{name}.safetensors"));
        edit_checkpoint(&good, &bad, edit);
        let o = run(&[
            "lm",
            "generate",
            "--model",
            bad.to_str().unwrap(),
            "--max-tokens",
            "3",
        ]);
        let needle = needle.replace("\\\"", "\"");
        assert_user_error(&o, &needle);
    }
    // The untouched file still loads.
    let o = run(&[
        "lm",
        "generate",
        "--model",
        good.to_str().unwrap(),
        "--max-tokens",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// config.json records the typed run; `train --config` reruns it to the same weights.
#[test]
fn config_json_reruns_the_same_run() {
    let (out, ts, vs, os) = run_dir("config-rerun");
    let mut args = train_args(&ts, &vs, &os);
    args.extend(["--epochs", "1", "--threads", "2"]);
    assert!(run(&args).status.success());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["task"], "lm");
    assert!(cfg["cpu"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(cfg["run"]["model"]["vocab"].as_u64().unwrap() > 10);
    let again = out.with_file_name("again");
    let o = run(&[
        "lm",
        "train",
        "--config",
        out.join("config.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--threads",
        "2",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        std::fs::read(again.join("model.safetensors")).unwrap()
    );
}

/// Numeric options that would train on nothing, diverge or run backwards are refused before
/// training starts (one line, exit 2), as is a model too large for the machine's memory.
#[test]
fn numeric_options_are_checked_before_training() {
    let (_, ts, vs, os) = run_dir("numeric");
    for (extra, needle) in [
        (&["--batch-size", "0"][..], "batch size"),
        (&["--bptt", "0"], "BPTT"),
        (&["--lr", "nan"], "learning rate"),
        (&["--lr=-1"], "learning rate"),
        (&["--clip=-1"], "clip"),
        (&["--epochs", "0"], "epochs"),
        (&["--init", "uniform:-5"], "uniform:A (A > 0)"),
        (&["--schedule", "step:2:0"], "FACTOR > 0"),
        (&["--dropout", "1.5"], "dropout"),
        (&["--patience", "0"], "patience"),
        (&["--hidden", "100000000"], "GiB"),
    ] {
        // The base arguments without the option under test.
        let base = train_args(&ts, &vs, &os);
        let mut args: Vec<&str> = Vec::new();
        let mut i = 0;
        while i < base.len() {
            if base[i] == extra[0].split('=').next().unwrap() {
                i += 2;
                continue;
            }
            args.push(base[i]);
            i += 1;
        }
        args.extend(extra);
        assert_user_error(&run(&args), needle);
    }
    let tiny_valid = std::path::Path::new(&os).with_file_name("tiny.txt");
    std::fs::write(&tiny_valid, "a b c\n").unwrap();
    let args = train_args(&ts, tiny_valid.to_str().unwrap(), &os);
    assert_user_error(&run(&args), "too few for the evaluation batch");
    let o = run(&["lm", "generate", "--model", "x", "--temperature", "nan"]);
    assert_user_error(&o, "--temperature");
}

/// A run folder is not overwritten by accident, and two runs cannot write into one.
#[test]
fn run_folders_are_guarded() {
    let (out, ts, vs, os) = run_dir("guard");
    let mut args = train_args(&ts, &vs, &os);
    args.extend(["--epochs", "1"]);
    assert!(run(&args).status.success());
    assert_user_error(&run(&args), "holds a run already");
    let mut again = args.clone();
    again.push("--overwrite");
    assert!(run(&again).status.success());
    // A lock held by a live process (this test) refuses the folder.
    std::fs::write(out.join(".rnnkit.lock"), std::process::id().to_string()).unwrap();
    assert_user_error(&run(&again), "another rnnkit");
    // A stale lock (no such process) and a killed run's temporary files are cleared.
    std::fs::write(out.join(".rnnkit.lock"), "4000000").unwrap();
    std::fs::write(out.join(".model.safetensors.tmp123"), "x").unwrap();
    assert!(run(&again).status.success());
    assert!(!out.join(".model.safetensors.tmp123").exists());
    assert!(
        !out.join(".rnnkit.lock").exists(),
        "the lock goes with the run"
    );
}

/// SIGTERM saves the state and exits with 130; resuming ends with the weights of a run
/// that was never interrupted, bit for bit.
#[test]
fn sigterm_saves_and_resume_is_bit_identical() {
    let (out, ts, vs, os) = run_dir("sigterm");
    let whole = out.with_file_name("whole");
    let mut args = train_args(&ts, &vs, whole.to_str().unwrap());
    args.extend(["--epochs", "40", "--threads", "2"]);
    assert!(run(&args).status.success());
    let mut args = train_args(&ts, &vs, &os);
    args.extend(["--epochs", "40", "--threads", "2"]);
    let mut child = bin().args(&args).spawn().unwrap();
    // Wait for a few logged steps, then ask it to stop.
    let metrics = out.join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 6 {
        assert!(t0.elapsed().as_secs() < 60, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    if status.code() == Some(0) {
        eprintln!("the run ended before the signal arrived; nothing to resume");
        return;
    }
    assert_eq!(status.code(), Some(130));
    let o = run(&["lm", "train", "--resume", &os, "--quiet", "--threads", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = "model.safetensors";
    assert!(
        tensors(&whole.join(model)) == tensors(&out.join(model)),
        "weights differ after an interrupted and resumed run"
    );
}

/// A diverging run stops at the step where the loss stops being finite (exit 3, the step
/// named), unless told to skip such steps.
#[test]
fn non_finite_loss_is_caught_where_it_appears() {
    let (_, ts, vs, os) = run_dir("nan");
    let base = train_args(&ts, &vs, &os);
    let mut args: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < base.len() {
        if ["--optim", "--lr"].contains(&base[i]) {
            i += 2;
            continue;
        }
        args.push(base[i]);
        i += 1;
    }
    args.extend([
        "--optim", "sgd", "--lr", "1e30", "--clip", "0", "--epochs", "2",
    ]);
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        (err.contains("not finite") || err.contains("diverged")) && err.contains("step"),
        "{err}"
    );
    // Adam at 1e30 keeps the loss finite (~1e29 a token), which is divergence all the
    // same: it used to end with exit 0 and a perplexity of null.
    let lr = base.iter().position(|&a| a == "--lr").unwrap() + 1;
    let mut adam = base.clone();
    adam[lr] = "1e30";
    adam.extend(["--epochs", "1", "--overwrite"]);
    let o = run(&adam);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("diverged") || err.contains("not finite"),
        "{err}"
    );
    // Skipping goes past the first bad step (several are logged); a run whose validation
    // never becomes finite ends without a model, and says so.
    args.extend(["--on-nan", "skip", "--overwrite"]);
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    let log = std::fs::read_to_string(Path::new(&os).join("metrics.jsonl")).unwrap();
    assert!(log.matches("non_finite").count() > 1, "{log}");
    if o.status.code() == Some(3) {
        assert!(err.contains("no model was saved"), "{err}");
    } else {
        assert!(o.status.success(), "{err}");
    }
}

/// `translate score` prints sacreBLEU's BLEU and chrF (the values are checked against
/// sacreBLEU in tests/parity.rs); files of different lengths are a one-line error.
#[test]
fn translate_score_json_and_mismatched_files() {
    let d = tmp("bleu");
    let (r, h, short) = (d.join("ref.txt"), d.join("hyp.txt"), d.join("short.txt"));
    std::fs::write(
        &r,
        "Кошка сидит на коврике.\nthe dog runs fast, very fast!\n",
    )
    .unwrap();
    std::fs::write(&h, "Кошка сидит на ковре.\nthe dog runs very fast!\n").unwrap();
    std::fs::write(&short, "one line\n").unwrap();
    let o = run(&[
        "translate",
        "score",
        "--ref",
        r.to_str().unwrap(),
        "--hyp",
        h.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = last_json(&o);
    for k in ["bleu", "chrf", "brevity_penalty", "sys_len", "ref_len"] {
        assert!(j[k].is_number(), "{k}: {j}");
    }
    assert_eq!(j["precisions"].as_array().unwrap().len(), 4);
    let o = run(&[
        "translate",
        "score",
        "--ref",
        r.to_str().unwrap(),
        "--hyp",
        short.to_str().unwrap(),
    ]);
    assert_user_error(&o, "1 lines, but the reference");
}

/// A file without line breaks (a device, a binary) is refused at the line-length cap, not
/// read into memory.
#[test]
fn endless_lines_are_refused() {
    let (_, _, vs, os) = run_dir("devzero");
    let args = train_args("/dev/zero", &vs, &os);
    assert_user_error(&run(&args), "a line longer than 64 MiB");
}

/// The short version of tools/kill_harness.py: SIGKILL a run at pseudo-random moments
/// (mid-step, mid-validation, mid-save: it saves after every step), resume it each time,
/// and end with the weights and the metrics log of a run that was never killed.
#[test]
fn sigkill_at_random_moments_then_resume_is_bit_identical() {
    let (out, ts, vs, os) = run_dir("sigkill");
    let whole = out.with_file_name("whole");
    let extra = [
        "--epochs",
        "3",
        "--threads",
        "1",
        "--save-every",
        "1",
        "--eval-every",
        "7",
    ];
    let mut args = train_args(&ts, &vs, whole.to_str().unwrap());
    args.extend(extra);
    assert!(run(&args).status.success());
    let mut args = train_args(&ts, &vs, &os);
    args.extend(extra);
    let (mut kills, mut seed, mut finished) = (0, 12345u64, false);
    for _ in 0..40 {
        let resumable = out.join("train_state.safetensors").exists();
        let mut cmd = bin();
        match resumable {
            true => cmd.args(["lm", "train", "--resume", &os, "--quiet", "--threads", "1"]),
            false => cmd.args(&args).arg("--overwrite"),
        };
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if kills < 3 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let ms = 40 + (seed >> 33) % 400;
            std::thread::sleep(std::time::Duration::from_millis(ms));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "a resumed run failed: {status}");
        finished = true;
        break;
    }
    assert!(finished && kills > 0, "{kills} kills, finished {finished}");
    let model = "model.safetensors";
    assert!(
        tensors(&whole.join(model)) == tensors(&out.join(model)),
        "weights differ after {kills} kills"
    );
    // The log holds each step once, as the uninterrupted run's (timings aside).
    let log = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.retain(|k, _| k != "wall_s" && !k.ends_with("_per_s"));
                v
            })
            .collect()
    };
    let (a, b) = (log(&whole), log(&out));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "metrics.jsonl line {} after {kills} kills", i + 1);
    }
    assert_eq!(a.len(), b.len(), "metrics.jsonl lines after {kills} kills");
}

/// A save that fails (here a file-size limit, as a full disk would) stops the run with a
/// one-line error naming the file that still holds the last good state, which resumes.
#[test]
fn failed_save_keeps_the_last_good_state() {
    let (out, ts, vs, os) = run_dir("failsave");
    let mut args = train_args(&ts, &vs, &os);
    args.extend(["--epochs", "2", "--max-tokens", "700", "--threads", "1"]);
    assert!(run(&args).status.success());
    let state = out.join("train_state.safetensors");
    let before = std::fs::read(&state).unwrap();
    // Room for the log to grow, far below a checkpoint: every save of the resumed run fails.
    let size = |f: &str| std::fs::metadata(out.join(f)).unwrap().len();
    let limit = size("metrics.jsonl") + (64 << 10);
    assert!(
        limit < size("model.safetensors"),
        "the test model is too small"
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -f {}; exec {} lm train --resume {os} --quiet --threads 1",
            limit >> 10,
            env!("CARGO_BIN_EXE_rnnkit")
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("could not save") && err.contains("untouched"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&state).unwrap(),
        before,
        "the good state changed"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let o = run(&["lm", "train", "--resume", &os, "--quiet", "--threads", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A pipe as the training file (`<(...)`), which can be read only once, trains like the
/// file itself; a folder is refused with one line.
#[test]
fn training_reads_a_pipe_and_refuses_a_folder() {
    let (out, ts, vs, os) = run_dir("pipe");
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec {} lm train --train <(cat {ts}) --valid <(cat {vs}) --tokenizer word --embed 8 --hidden 8 --batch-size 4 --bptt 8 --epochs 1 --threads 1 --quiet --json --out {os}",
            env!("CARGO_BIN_EXE_rnnkit")
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(last_json(&o)["valid_ppl"].as_f64().unwrap() > 1.0);
    let dir = out.parent().unwrap().to_str().unwrap().to_string();
    let mut args = train_args(&dir, &vs, &os);
    args.push("--overwrite");
    assert_user_error(&run(&args), "is a folder");
}

/// Metrics near ±f64::MAX (a diverged run) leave those points out of the plot instead of
/// spinning in the axis ticks.
#[test]
fn plot_leaves_out_overflowing_values() {
    let d = tmp("plot-huge");
    let run_dir = d.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(
        run_dir.join("metrics.jsonl"),
        "{\"step\":1,\"loss\":1e308,\"tokens\":1}\n{\"step\":2,\"loss\":-1e308,\"tokens\":2}\n{\"step\":3,\"loss\":1.5,\"tokens\":3}\n{\"step\":4,\"loss\":1.2,\"tokens\":4}\n",
    )
    .unwrap();
    let png = d.join("p.png");
    let t0 = std::time::Instant::now();
    let o = run(&[
        "plot",
        run_dir.to_str().unwrap(),
        "--metric",
        "loss",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(t0.elapsed().as_secs() < 10 && png.exists());
    // A PNG written to a device is written into it, not put in its place (plot and the
    // confusion heatmap renamed a file over /dev/null); a link is written through.
    let link = d.join("link.png");
    std::os::unix::fs::symlink(&png, &link).unwrap();
    for out in [Path::new("/dev/null"), link.as_path()] {
        let args = [
            "plot",
            run_dir.to_str().unwrap(),
            "--metric",
            "loss",
            "--out",
            out.to_str().unwrap(),
        ];
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    use std::os::unix::fs::FileTypeExt;
    let null = std::fs::metadata("/dev/null").unwrap().file_type();
    assert!(null.is_char_device(), "/dev/null was replaced");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}

/// Rewrites the safetensors header of `src` into `dst` (the data bytes are kept as they are).
fn edit_header(src: &Path, dst: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let buf = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
    let mut h: serde_json::Value = serde_json::from_slice(&buf[8..8 + n]).unwrap();
    edit(&mut h);
    let hs = h.to_string().into_bytes();
    let mut out = (hs.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&hs);
    out.extend_from_slice(&buf[8 + n..]);
    std::fs::write(dst, out).unwrap();
}

/// Broken or hostile safetensors files: overlapping and out-of-range offsets, a shape whose
/// product overflows, a dtype the model does not use, deeply nested and huge metadata, a
/// device instead of a file. Each is a one-line error with exit 2, never a panic or an
/// allocation the file asks for.
#[test]
fn hostile_safetensors_are_refused() {
    let (out, ts, vs, os) = run_dir("hostile-st");
    let mut args = train_args(&ts, &vs, &os);
    args.extend(["--epochs", "1"]);
    assert!(run(&args).status.success());
    let good = out.join("model.safetensors");
    let first = |h: &serde_json::Value| -> String {
        h.as_object()
            .unwrap()
            .keys()
            .find(|k| *k != "__metadata__")
            .unwrap()
            .clone()
    };
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "overlap",
            Box::new(move |h| {
                let k = first(h);
                h[&k]["data_offsets"][1] = (h[&k]["data_offsets"][1].as_u64().unwrap() + 4).into();
            }),
            "not a safetensors file",
        ),
        (
            "range",
            Box::new(move |h| {
                let k = first(h);
                h[&k]["data_offsets"] = serde_json::json!([0, 1u64 << 40]);
            }),
            "not a safetensors file",
        ),
        (
            "overflow",
            Box::new(move |h| {
                let k = first(h);
                h[&k]["shape"] = serde_json::json!([1u64 << 62, 1u64 << 62, 16]);
            }),
            "not a safetensors file",
        ),
        (
            "dtype",
            Box::new(|h| {
                let names: Vec<String> = h
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| *k != "__metadata__")
                    .cloned()
                    .collect();
                for k in names {
                    if h[&k]["dtype"] == "F32" {
                        // Same byte size, another meaning.
                        h[&k]["dtype"] = "I32".into();
                    }
                }
            }),
            "expected F32",
        ),
        (
            "nested",
            Box::new(|h| {
                let deep = "[".repeat(100_000) + &"]".repeat(100_000);
                h["__metadata__"]["rnnkit"] = deep.into();
            }),
            "metadata",
        ),
        (
            "hugemeta",
            Box::new(|h| {
                h["__metadata__"]["padding"] = "x".repeat(120 << 20).into();
            }),
            "not a safetensors file",
        ),
    ];
    for (name, edit, needle) in cases {
        let bad = out.join(format!("{name}.safetensors"));
        edit_header(&good, &bad, edit);
        let o = run(&[
            "lm",
            "generate",
            "--model",
            bad.to_str().unwrap(),
            "--max-tokens",
            "3",
        ]);
        assert_user_error(&o, needle);
    }
    for dev in ["/dev/zero", "/dev/null"] {
        let o = run(&["lm", "generate", "--model", dev, "--max-tokens", "3"]);
        assert_user_error(&o, dev);
    }
}

/// `--precision bf16` is part of the run: written to config.json, kept by `--resume` (the
/// resumed run ends bit for bit where an uninterrupted bf16 run ends), and close to fp32 in
/// quality; `bench` names the kernel that ran. On a CPU without bf16 products the option
/// runs fp32, and the test still holds.
#[test]
fn bf16_is_kept_on_resume_and_close_to_fp32() {
    let d = tmp("bf16");
    let (t, v) = corpus(&d);
    let (ts, vs) = (t.to_str().unwrap(), v.to_str().unwrap());
    let (a, b, f) = (d.join("a"), d.join("b"), d.join("f"));
    let bf16 = ["--epochs", "2", "--precision", "bf16"];
    let mut args = train_args(ts, vs, a.to_str().unwrap());
    args.extend(bf16);
    let oa = run(&args);
    assert!(
        oa.status.success(),
        "{}",
        String::from_utf8_lossy(&oa.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["run"]["train"]["precision"], "bf16");
    let mut args = train_args(ts, vs, b.to_str().unwrap());
    args.extend(bf16);
    args.extend(["--max-tokens", "700"]);
    assert!(run(&args).status.success());
    resume_ends_where(&b, &a, &[]);
    // Quality: bf16 training ends at a sane perplexity (its trajectory is not fp32's, so
    // a tiny run is no place to compare the two), and one model evaluated with bf16
    // products scores within 1% of the same model in fp32.
    let pb = last_json(&oa)["valid_ppl"].as_f64().unwrap();
    assert!(pb.is_finite() && pb < 400.0, "bf16 valid ppl {pb}");
    let mut args = train_args(ts, vs, f.to_str().unwrap());
    args.extend(["--epochs", "2"]);
    assert!(run(&args).status.success());
    let model = f.join("model.safetensors");
    let eval = |p: &str| {
        let m = model.to_str().unwrap();
        let o = run(&[
            "lm",
            "eval",
            "--model",
            m,
            "--data",
            vs,
            "--precision",
            p,
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        last_json(&o)["ppl"].as_f64().unwrap()
    };
    let (ef, eb) = (eval("f32"), eval("bf16"));
    assert!(
        (eb / ef - 1.0).abs() < 0.01,
        "eval ppl bf16 {eb} vs fp32 {ef}"
    );

    // A bf16 checkpoint on request: every tensor BF16 (the f32 values rounded to nearest
    // even), names and metadata kept, loaded by every command as f32; back to f32 exactly.
    let (small, back) = (d.join("small.safetensors"), d.join("back.safetensors"));
    let convert = |from: &Path, to: &Path, dtype: &str| {
        let o = run(&[
            "convert",
            "--model",
            from.to_str().unwrap(),
            "--out",
            to.to_str().unwrap(),
            "--dtype",
            dtype,
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        last_json(&o)
    };
    let c = convert(&model, &small, "bf16");
    assert_eq!(c["dtype"], "bf16");
    let read = |f: &Path| std::fs::read(f).unwrap();
    let (fb, sb) = (read(&model), read(&small));
    let (ft, st) = (
        safetensors::SafeTensors::deserialize(&fb).unwrap(),
        safetensors::SafeTensors::deserialize(&sb).unwrap(),
    );
    let mut params = 0;
    for (name, t) in ft.tensors() {
        let h = st.tensor(&name).unwrap();
        assert_eq!(h.dtype(), safetensors::Dtype::BF16, "{name}");
        assert_eq!(h.shape(), t.shape(), "{name}");
        for (x, y) in t.data().chunks_exact(4).zip(h.data().chunks_exact(2)) {
            let v = f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
            let r = f32::from_bits(u32::from(u16::from_le_bytes([y[0], y[1]])) << 16);
            assert!((r - v).abs() <= v.abs() / 256.0, "{name}: {v} -> {r}");
            params += 1;
        }
    }
    assert_eq!(c["params"], params);
    assert_eq!(SafeMeta::of(&fb), SafeMeta::of(&sb), "metadata kept");
    let m = small.to_str().unwrap();
    let o = run(&["lm", "eval", "--model", m, "--data", vs, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let es = last_json(&o)["ppl"].as_f64().unwrap();
    assert!((es / ef - 1.0).abs() < 0.01, "bf16 file ppl {es} vs {ef}");
    let o = run(&[
        "lm",
        "generate",
        "--model",
        m,
        "--max-tokens",
        "5",
        "--seed",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    convert(&small, &back, "f32");
    let bb = read(&back);
    let bt = safetensors::SafeTensors::deserialize(&bb).unwrap();
    for (name, h) in st.tensors() {
        let w = bt.tensor(&name).unwrap();
        assert_eq!(w.dtype(), safetensors::Dtype::F32);
        let widened: Vec<u8> = h
            .data()
            .chunks_exact(2)
            .flat_map(|y| (u32::from(u16::from_le_bytes([y[0], y[1]])) << 16).to_le_bytes())
            .collect();
        assert_eq!(w.data(), &widened[..], "{name}");
    }
    // The training state stays f32 (resuming needs it): refused in one line, exit 2.
    let o = run(&[
        "convert",
        "--model",
        f.join("train_state.safetensors").to_str().unwrap(),
        "--out",
        d.join("x.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("training state") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!d.join("x.safetensors").exists());
    let o = run(&["convert", "--model", m, "--out", m, "--dtype", "fp8"]);
    assert_eq!(o.status.code(), Some(2));

    let bench = |p: &str| {
        let o = run(&[
            "bench",
            "lm",
            "--hidden",
            "32",
            "--vocab",
            "50",
            "--batch-size",
            "4",
            "--bptt",
            "10",
            "--steps",
            "2",
            "--precision",
            p,
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        last_json(&o)["kernel"].as_str().unwrap().to_string()
    };
    assert_eq!(bench("f32"), "fp32");
    let k = bench("bf16");
    assert!(
        ["amx-bf16", "avx512-bf16", "fp32"].contains(&k.as_str()),
        "{k}"
    );
    let bad = run(&["bench", "lm", "--precision", "fp8"]);
    assert_eq!(bad.status.code(), Some(2));
}
