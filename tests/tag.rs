//! End-to-end tests of `rnnkit tag`: the real binary trains a tiny tagger on a few hundred
//! sentences of CoNLL-2003 (when RNNKIT_DATA_DIR has it; otherwise a small generated corpus
//! in the same format), then evaluates, predicts in every format and scores.

mod common;

use common::{assert_user_error, last_json, run, s, tmp};
use std::path::{Path, PathBuf};

/// A generated corpus in CoNLL-2003's four-column layout, with a `-DOCSTART-` line.
fn generated(n: usize, seed: usize) -> String {
    let names = ["Peter", "Anna", "Blair", "Ivanov", "Müller"];
    let places = ["Paris", "Bonn", "London", "Москва"];
    let orgs = ["EU", "Reuters", "UN"];
    let mut out = String::from("-DOCSTART- -X- -X- O\n\n");
    for i in 0..n {
        let k = i * 7 + seed;
        let (p, l, o) = (names[k % 5], places[k % 4], orgs[k % 3]);
        out += &format!(
            "{p} NNP B-NP B-PER\nsaid VBD B-VP O\nin IN B-PP O\n{l} NNP B-NP B-LOC\nthat IN O O\n{o} NNP B-NP B-ORG\nwins VBZ B-VP O\n. . O O\n\n"
        );
        if k.is_multiple_of(3) {
            out += &format!("New NNP B-NP B-LOC\nYork NNP I-NP I-LOC\n{p} NNP I-NP B-PER\n\n");
        }
    }
    out
}

/// (train, valid) files: CoNLL-2003's first sentences, or the generated corpus.
fn corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let real = std::env::var_os("RNNKIT_DATA_DIR")
        .map(|d| PathBuf::from(d).join("conll2003/train.txt"))
        .and_then(|p| std::fs::read_to_string(p).ok());
    let (train, valid) = match real {
        Some(text) => {
            let sents: Vec<&str> = text.split("\n\n").collect();
            (
                sents[..400].join("\n\n") + "\n\n",
                sents[400..480].join("\n\n") + "\n\n",
            )
        }
        None => {
            eprintln!(
                "RNNKIT_DATA_DIR unset: training on a generated corpus instead of CoNLL-2003"
            );
            (generated(60, 0), generated(10, 3))
        }
    };
    let (t, v) = (dir.join("train.txt"), dir.join("valid.txt"));
    std::fs::write(&t, train).unwrap();
    std::fs::write(&v, valid).unwrap();
    (t, v)
}

fn train_tiny(dir: &Path, extra: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let (t, v) = corpus(dir);
    let out = dir.join("run");
    let mut args = vec![
        "tag",
        "train",
        "--train",
        &s(&t),
        "--valid",
        &s(&v),
        "--test",
        &s(&v),
        "--embed",
        "16",
        "--hidden",
        "16",
        "--char-dim",
        "8",
        "--char-hidden",
        "8",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--threads",
        "2",
        "--quiet",
        "--json",
        "--out",
        &s(&out),
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    let o = run(&refs);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = last_json(&o);
    for k in [
        "valid_f1",
        "test_f1",
        "test_accuracy",
        "test_precision",
        "test_recall",
    ] {
        let v = j[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {j}"));
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    assert!(j["test_per_type"].is_object());
    for f in [
        "model.safetensors",
        "train_state.safetensors",
        "config.json",
        "metrics.jsonl",
        "loss.png",
        "f1.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    (out.join("model.safetensors"), t, v)
}

/// Train, evaluate, predict (every format) and score: `tag eval` on the validation file
/// equals `tag score` of `tag predict`'s output, which appends its tag to the input's columns.
#[test]
fn train_eval_predict_score() {
    let d = tmp("e2e");
    let (model, _, v) = train_tiny(&d, &[]);
    let (m, vs) = (s(&model), s(&v));
    let o = run(&["tag", "eval", "--model", &m, "--data", &vs, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let eval = last_json(&o);
    let o = run(&["tag", "predict", "--model", &m, "--input", &vs]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pred = d.join("pred.txt");
    std::fs::write(&pred, &o.stdout).unwrap();
    let first = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        first.split_whitespace().count(),
        5,
        "input's 4 columns + the tag: {first}"
    );
    let o = run(&["tag", "score", "--gold", &vs, "--pred", &s(&pred), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let score = last_json(&o);
    for k in ["f1", "precision", "recall", "accuracy"] {
        assert!(
            (score[k].as_f64().unwrap() - eval[k].as_f64().unwrap()).abs() < 1e-12,
            "{k}"
        );
    }
    // Plain text: tokens split at punctuation, entities with character offsets.
    let txt = d.join("in.txt");
    std::fs::write(
        &txt,
        "Peter Blair said in Paris, that the EU wins.\nНичего\n",
    )
    .unwrap();
    let o = run(&[
        "tag",
        "predict",
        "--model",
        &m,
        "--input",
        &s(&txt),
        "--text",
        "--format",
        "json",
        "--probs",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["tokens"].as_array().unwrap().len(), 11);
    for e in lines[0]["entities"].as_array().unwrap() {
        let (cs, ce) = (
            e["char_start"].as_u64().unwrap() as usize,
            e["char_end"].as_u64().unwrap() as usize,
        );
        let text: String = "Peter Blair said in Paris, that the EU wins."
            .chars()
            .skip(cs)
            .take(ce - cs)
            .collect();
        assert_eq!(e["text"].as_str().unwrap(), text);
        assert!((0.0..=1.0).contains(&e["prob"].as_f64().unwrap()));
    }
    let o = run(&[
        "tag",
        "predict",
        "--model",
        &m,
        "--input",
        &s(&txt),
        "--text",
        "--format",
        "html",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("<html>"));
}

/// One entity type: everything else becomes O, and only that type is scored.
#[test]
fn one_type_only() {
    let d = tmp("types");
    let (model, _, v) = train_tiny(&d, &["--types", "PER", "--output", "softmax"]);
    let o = run(&[
        "tag",
        "eval",
        "--model",
        &s(&model),
        "--data",
        &s(&v),
        "--json",
    ]);
    let j = last_json(&o);
    // The model records its types: evaluation reads the other types as O, as training did.
    let types: Vec<&String> = j["per_type"].as_object().unwrap().keys().collect();
    assert_eq!(types, ["PER"], "{j}");
}

/// Bad input: one-line errors with exit 2, never a panic.
#[test]
fn bad_input_is_a_one_line_error() {
    let d = tmp("bad");
    let (model, t, _) = train_tiny(&d, &[]);
    let m = s(&model);
    let ragged = d.join("ragged.txt");
    std::fs::write(&ragged, "EU NNP B-NP B-ORG\nrejects VBZ O\n").unwrap();
    assert_user_error(
        &run(&["tag", "eval", "--model", &m, "--data", &s(&ragged)]),
        "ragged.txt:2:",
    );
    let bad_tag = d.join("badtag.txt");
    std::fs::write(&bad_tag, "EU NNP B-NP O\nrejects VBZ B-VP I-ORG\n").unwrap();
    assert_user_error(
        &run(&["tag", "eval", "--model", &m, "--data", &s(&bad_tag)]),
        "badtag.txt:2:",
    );
    let unseen = d.join("unseen.txt");
    std::fs::write(&unseen, "EU NNP B-NP B-FOOD\n").unwrap();
    assert_user_error(
        &run(&["tag", "eval", "--model", &m, "--data", &s(&unseen)]),
        "never occurs in the training data",
    );
    let empty = d.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    assert_user_error(
        &run(&["tag", "eval", "--model", &m, "--data", &s(&empty)]),
        "no sentences",
    );
    let out = d.join("x");
    assert_user_error(
        &run(&["tag", "train", "--train", &s(&empty), "--out", &s(&out)]),
        "no sentences",
    );
    assert_user_error(
        &run(&["tag", "train", "--train", &s(&bad_tag), "--out", &s(&out)]),
        "badtag.txt:2:",
    );
    // A language model is not a tagger.
    let lm = d.join("lm");
    let o = run(&[
        "lm",
        "train",
        "--train",
        &s(&t),
        "--tokenizer",
        "word",
        "--embed",
        "8",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--bptt",
        "5",
        "--quiet",
        "--out",
        &s(&lm),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_user_error(
        &run(&[
            "tag",
            "predict",
            "--model",
            &s(&lm.join("model.safetensors")),
            "--input",
            &s(&t),
        ]),
        "task",
    );
    let pred_short = d.join("short.txt");
    std::fs::write(&pred_short, "EU NNP B-NP B-ORG\n").unwrap();
    assert_user_error(
        &run(&["tag", "score", "--gold", &s(&t), "--pred", &s(&pred_short)]),
        "sentences",
    );
}

/// `bench tag --file` tags a real CoNLL file besides the random sentences and reports both.
#[test]
fn bench_tag_times_a_file() {
    let dir = tmp("bench-tag-file");
    let (_, v) = corpus(&dir);
    let o = run(&[
        "bench",
        "tag",
        "--steps",
        "2",
        "--threads",
        "1",
        "--file",
        &s(&v),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = last_json(&o);
    assert!(j["file_infer_sentences_per_s"].as_f64().unwrap() > 0.0);
    assert!(j["file_sentences"].as_u64().unwrap() >= 10);
    let missing = dir.join("missing.txt");
    let o = run(&["bench", "tag", "--steps", "1", "--file", &s(&missing)]);
    assert_user_error(&o, "missing.txt");
}
