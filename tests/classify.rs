//! End-to-end tests of `rnnkit classify`: the real binary trains a tiny classifier on a few
//! hundred SST-2 sentences (when RNNKIT_DATA_DIR has them; otherwise a small generated TSV),
//! then evaluates and predicts.

mod common;

use common::{assert_user_error, last_json, run, s, tmp};
use std::path::{Path, PathBuf};

fn generated(n: usize) -> String {
    let good = [
        "a charming , moving film",
        "great acting and a fine story",
        "wonderful",
    ];
    let bad = ["a dull , tedious mess", "boring and far too long", "awful"];
    let mut out = String::from("sentence\tlabel\n");
    for i in 0..n {
        out += &format!(
            "{} {}\t1\n{} {}\t0\n",
            good[i % 3],
            i % 7,
            bad[(i + 1) % 3],
            i % 5
        );
    }
    out
}

fn corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let real = std::env::var_os("RNNKIT_DATA_DIR")
        .map(|d| PathBuf::from(d).join("sst2/train.tsv"))
        .and_then(|p| std::fs::read_to_string(p).ok());
    let (train, valid) = match real {
        Some(text) => {
            let lines: Vec<&str> = text.lines().collect();
            (
                lines[..600].join("\n") + "\n",
                [&lines[..1], &lines[600..700]].concat().join("\n") + "\n",
            )
        }
        None => {
            eprintln!("RNNKIT_DATA_DIR unset: training on a generated TSV instead of SST-2");
            (generated(100), generated(20))
        }
    };
    let (t, v) = (dir.join("train.tsv"), dir.join("dev.tsv"));
    std::fs::write(&t, train).unwrap();
    std::fs::write(&v, valid).unwrap();
    (t, v)
}

/// Train with each pooling, evaluate (JSON with the confusion matrix, PNG heatmap), predict
/// with every class's probability; `eval` agrees with the training summary.
#[test]
fn train_eval_predict() {
    let d = tmp("e2e");
    let (t, v) = corpus(&d);
    for pooling in ["last", "max", "mean", "attention"] {
        let out = d.join(pooling);
        let o = run(&[
            "classify",
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
            "--epochs",
            "2",
            "--pooling",
            pooling,
            "--class-weights",
            "balanced",
            "--threads",
            "2",
            "--quiet",
            "--json",
            "--out",
            &s(&out),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let j = last_json(&o);
        let acc = j["valid_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc) && j["test_macro_f1"].as_f64().is_some());
        for f in [
            "model.safetensors",
            "config.json",
            "loss.png",
            "accuracy.png",
            "confusion_valid.png",
        ] {
            assert!(out.join(f).is_file(), "{pooling}: {f} missing");
        }
        let m = s(&out.join("model.safetensors"));
        let png = d.join(format!("{pooling}.png"));
        let o = run(&[
            "classify",
            "eval",
            "--model",
            &m,
            "--data",
            &s(&v),
            "--json",
            "--confusion-png",
            &s(&png),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let e = last_json(&o);
        assert!(
            (e["accuracy"].as_f64().unwrap() - acc).abs() < 1e-12,
            "{pooling}"
        );
        let conf: Vec<Vec<u64>> = serde_json::from_value(e["confusion"].clone()).unwrap();
        assert_eq!(
            conf.iter().flatten().sum::<u64>() as usize,
            std::fs::read_to_string(&v).unwrap().lines().count() - 1
        );
        assert!(png.is_file());
    }
    let m = s(&d.join("max/model.safetensors"));
    let input = d.join("in.txt");
    std::fs::write(&input, "a charming film\n\nawful , just awful\n").unwrap();
    let o = run(&[
        "classify",
        "predict",
        "--model",
        &m,
        "--input",
        &s(&input),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "an empty line gets a label too");
    for r in &rows {
        let total: f64 = r["probs"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-4);
    }
}

/// Numbered columns without a header, and bad input as one-line errors.
#[test]
fn columns_and_bad_input() {
    let d = tmp("cols");
    let tsv = d.join("plain.tsv");
    std::fs::write(
        &tsv,
        "pos\tgreat fun\nneg\tso dull\npos\tlovely\nneg\tawful\n",
    )
    .unwrap();
    let out = d.join("run");
    let o = run(&[
        "classify",
        "train",
        "--train",
        &s(&tsv),
        "--valid",
        &s(&tsv),
        "--text-col",
        "1",
        "--label-col",
        "0",
        "--embed",
        "8",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        &s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = s(&out.join("model.safetensors"));
    let ragged = d.join("ragged.tsv");
    std::fs::write(&ragged, "pos\tgreat fun\nneg\n").unwrap();
    assert_user_error(
        &run(&[
            "classify",
            "eval",
            "--model",
            &m,
            "--data",
            &s(&ragged),
            "--text-col",
            "1",
            "--label-col",
            "0",
        ]),
        "ragged.tsv:2:",
    );
    let unseen = d.join("unseen.tsv");
    std::fs::write(&unseen, "meh\tso so\n").unwrap();
    assert_user_error(
        &run(&[
            "classify",
            "eval",
            "--model",
            &m,
            "--data",
            &s(&unseen),
            "--text-col",
            "1",
            "--label-col",
            "0",
        ]),
        "never occurs in the training data",
    );
    let empty = d.join("empty.tsv");
    std::fs::write(&empty, "").unwrap();
    assert_user_error(
        &run(&[
            "classify",
            "train",
            "--train",
            &s(&empty),
            "--out",
            &s(&out),
        ]),
        "empty.tsv",
    );
    assert_user_error(
        &run(&[
            "classify",
            "train",
            "--train",
            &s(&tsv),
            "--text-col",
            "1",
            "--label-col",
            "0",
            "--class-weights",
            "1,2,3",
            "--out",
            &s(&d.join("w")),
        ]),
        "3 class weights for 2 classes",
    );
    // A tagger or LM checkpoint is not a classifier.
    assert_user_error(
        &run(&[
            "classify",
            "predict",
            "--model",
            &s(&tsv),
            "--input",
            &s(&tsv),
        ]),
        "plain.tsv",
    );
}
