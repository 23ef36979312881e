//! End-to-end tests of `rnnkit translate`: the real binary trains a tiny translator on a few
//! hundred Multi30k pairs (when RNNKIT_DATA_DIR has them; otherwise a small generated
//! parallel corpus), then evaluates and translates, with attention maps.

mod common;

use common::{assert_user_error, last_json, run, s, tmp};
use std::path::{Path, PathBuf};

fn corpus(dir: &Path) -> [PathBuf; 4] {
    let data = std::env::var_os("RNNKIT_DATA_DIR").map(PathBuf::from);
    let read = |f: &str| {
        data.as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("multi30k").join(f)).ok())
    };
    let (de, en) = match (read("train.de"), read("train.en")) {
        (Some(de), Some(en)) => (
            de.lines().take(300).collect::<Vec<_>>().join("\n") + "\n",
            en.lines().take(300).collect::<Vec<_>>().join("\n") + "\n",
        ),
        _ => {
            eprintln!("RNNKIT_DATA_DIR unset: training on a generated corpus instead of Multi30k");
            let (mut de, mut en) = (String::new(), String::new());
            let w = [
                ("Hund", "dog"),
                ("Mann", "man"),
                ("Frau", "woman"),
                ("Kind", "child"),
            ];
            for i in 0..200 {
                let (a, b) = (w[i % 4], w[(i / 4) % 4]);
                de += &format!("Ein {} sieht einen {}.\n", a.0, b.0);
                en += &format!("A {} sees a {}.\n", a.1, b.1);
            }
            (de, en)
        }
    };
    let paths = [
        dir.join("t.de"),
        dir.join("t.en"),
        dir.join("v.de"),
        dir.join("v.en"),
    ];
    std::fs::write(&paths[0], &de).unwrap();
    std::fs::write(&paths[1], &en).unwrap();
    let head = |t: &str| t.lines().take(40).collect::<Vec<_>>().join("\n") + "\n";
    std::fs::write(&paths[2], head(&de)).unwrap();
    std::fs::write(&paths[3], head(&en)).unwrap();
    paths
}

/// Train a tiny model, evaluate it, translate its sources (an empty line and a source longer
/// than any in training included) with beam search, n-best JSON and attention maps.
#[test]
fn train_eval_translate() {
    let d = tmp("e2e");
    let [td, te, vd, ve] = corpus(&d);
    let out = d.join("run");
    let o = run(&[
        "translate",
        "train",
        "--train",
        &s(&td),
        &s(&te),
        "--valid",
        &s(&vd),
        &s(&ve),
        "--test",
        &s(&vd),
        &s(&ve),
        "--embed",
        "16",
        "--hidden",
        "16",
        "--decoder-hidden",
        "16",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--min-freq",
        "1",
        "--threads",
        "2",
        "--quiet",
        "--json",
        "--out",
        &s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = last_json(&o);
    for k in [
        "valid_bleu",
        "test_bleu",
        "test_chrf",
        "test_ppl_teacher_forced",
    ] {
        assert!(j[k].is_number(), "{k}: {j}");
    }
    assert!(out.join("bleu.png").is_file() && out.join("config.json").is_file());
    let m = s(&out.join("model.safetensors"));
    let o = run(&[
        "translate",
        "eval",
        "--model",
        &m,
        "--data",
        &s(&vd),
        &s(&ve),
        "--json",
        "--beam",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(last_json(&o)["sentences"], 40);
    let input = d.join("in.de");
    let long = "Ein Mann ".repeat(60);
    std::fs::write(&input, format!("Ein Hund läuft.\n\n{long}\n")).unwrap();
    let maps = d.join("maps");
    let o = run(&[
        "translate",
        "predict",
        "--model",
        &m,
        "--input",
        &s(&input),
        "--beam",
        "3",
        "--n-best",
        "2",
        "--json",
        "--attention-map",
        &s(&maps),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[1]["hypotheses"].as_array().unwrap().is_empty(),
        "an empty line stays empty"
    );
    let h = &rows[0]["hypotheses"].as_array().unwrap()[0];
    let att = h["attention"].as_array().unwrap();
    let srclen = rows[0]["source_tokens"].as_array().unwrap().len();
    assert!(!att.is_empty() && att.iter().all(|r| r.as_array().unwrap().len() == srclen));
    assert!(maps.join("0001.png").is_file() && maps.join("0003.png").is_file());
    let o = run(&[
        "translate",
        "predict",
        "--model",
        &m,
        "--input",
        &s(&input),
        "--beam",
        "1",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3);
    // --replace-unk leaves no <unk>: each is the source word its step attends to most.
    let unknown = d.join("unknown.de");
    std::fs::write(&unknown, "Ein Xylophon Quokka Zwölftonmusik.\n").unwrap();
    for (flag, beam) in [("--replace-unk", "1"), ("--replace-unk", "3")] {
        let o = run(&[
            "translate",
            "predict",
            "--model",
            &m,
            "--input",
            &s(&unknown),
            "--beam",
            beam,
            flag,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(!out.contains("<unk>") && out.lines().count() == 1, "{out}");
    }
    // A source over 1,024 tokens is cut to them, with a note naming the line.
    let longer = d.join("longer.de");
    std::fs::write(&longer, format!("Ein Hund.\n{}\n", "Ein Mann ".repeat(600))).unwrap();
    let o = run(&[
        "translate",
        "predict",
        "--model",
        &m,
        "--input",
        &s(&longer),
        "--beam",
        "1",
        "--max-len-a",
        "0",
        "--max-len-b",
        "5",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 2: 1200 source tokens, translating the first 1024"),
        "{err}"
    );
    // A stream without line breaks is refused at the line cap, not read into memory.
    assert_user_error(
        &run(&[
            "translate",
            "predict",
            "--model",
            &m,
            "--input",
            "/dev/zero",
        ]),
        "/dev/zero",
    );
}

/// Bad input: parallel files of different lengths, no layers, a checkpoint of another task,
/// decoding options out of range.
#[test]
fn bad_input() {
    let d = tmp("bad");
    let [td, te, _, _] = corpus(&d);
    let short = d.join("short.en");
    std::fs::write(&short, "one line\n").unwrap();
    assert_user_error(
        &run(&[
            "translate",
            "train",
            "--train",
            &s(&td),
            &s(&short),
            "--out",
            &s(&d.join("x")),
        ]),
        "expected line-aligned files",
    );
    assert_user_error(
        &run(&[
            "translate",
            "train",
            "--train",
            &s(&td),
            &s(&te),
            "--layers",
            "0",
            "--out",
            &s(&d.join("y")),
        ]),
        "at least one layer",
    );
    assert_user_error(
        &run(&[
            "translate",
            "predict",
            "--model",
            &s(&te),
            "--input",
            &s(&td),
        ]),
        "t.en",
    );
    // Decoding options are checked before the model is read (no model is needed to refuse).
    for (flag, value) in [("--beam", "0"), ("--alpha", "nan"), ("--max-len-a", "-1")] {
        assert_user_error(
            &run(&[
                "translate",
                "predict",
                "--model",
                "none",
                &format!("{flag}={value}"),
            ]),
            flag,
        );
    }
}
