//! Helpers the end-to-end tests share: running the binary, temporary folders, reading the
//! JSON line, checking one-line errors, and the small language-model corpus and run that
//! the command tests train (the first lines of PTB when RNNKIT_DATA_DIR has it, else
//! rnnkit's own README and sources).
#![allow(dead_code)]

pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rnnkit"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

/// A fresh folder named after the test and this process.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rnnkit-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// The last line of stdout, parsed as JSON (what `--json` prints).
pub fn last_json(o: &Output) -> serde_json::Value {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout; stderr: {}", String::from_utf8_lossy(&o.stderr)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Exit status 2, one line on stderr that mentions `needle`, no panic.
pub fn assert_user_error(o: &Output, needle: &str) {
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

/// Small real text: 300 lines of PTB's validation set, or the project's own text.
pub fn corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::env::var_os("RNNKIT_DATA_DIR")
        .map(|d| PathBuf::from(d).join("ptb/ptb.valid.txt"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            ["README.md", "src/task/lm/model.rs", "src/train/mod.rs"]
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
pub fn run_dir(name: &str) -> (PathBuf, String, String, String) {
    let d = tmp(name);
    let (t, v) = corpus(&d);
    let out = d.join("run");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    (out.clone(), s(&t), s(&v), s(&out))
}

/// Every tensor of a safetensors file as (name, raw bytes), sorted by name: what
/// "bit-identical weights" compares.
pub fn tensors(file: &Path) -> Vec<(String, Vec<u8>)> {
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
pub struct SafeMeta(pub Option<std::collections::HashMap<String, String>>);

impl SafeMeta {
    pub fn of(buf: &[u8]) -> SafeMeta {
        let (_, m) = safetensors::SafeTensors::read_metadata(buf).unwrap();
        SafeMeta(m.metadata().clone())
    }
}

pub fn train_args<'a>(t: &'a str, v: &'a str, out: &'a str) -> Vec<&'a str> {
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
