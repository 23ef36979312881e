//! End-to-end tests of the command line as a whole: `--help` everywhere, one-line errors
//! with exit status 2 for bad input and options, `bench`, `plot`, `translate score`.

mod common;

use common::*;
use std::path::Path;

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

/// The default `--help` shows for an option (`[default: X]` in its entry, which clap puts on
/// the option's line or, in long layouts, on the lines below it), if any.
fn help_default(help: &str, option: &str) -> Option<String> {
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(&format!("--{option} ")));
    let first = lines.next()?;
    let entry: String = std::iter::once(first)
        .chain(lines.take_while(|l| !l.trim_start().starts_with('-')))
        .collect::<Vec<_>>()
        .join(" ");
    let at = entry.rfind("[default: ")?;
    Some(entry[at + 10..].split(']').next()?.to_string())
}

/// Each `train` subcommand's `--help` shows the library recipe's defaults (the one place
/// they are written), and `lm generate` and `translate predict` show the library's
/// sampling and decoding defaults.
#[test]
fn help_shows_the_librarys_defaults() {
    use rnnkit::task::{classify, lm, tag, translate};
    let help = |args: &[&str]| {
        let o = run(args);
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap()
    };
    let num = |h: &str, opt: &str| -> f32 {
        let v = help_default(h, opt).unwrap_or_else(|| panic!("--{opt}: no default in {h}"));
        v.parse().unwrap_or_else(|_| panic!("--{opt}: {v}"))
    };
    let lm_r = lm::recipe::LmRun::recipe(None);
    let h = help(&["lm", "train", "--help"]);
    assert_eq!(num(&h, "lr"), lm_r.train.lr);
    assert_eq!(num(&h, "clip"), lm_r.train.clip);
    assert_eq!(num(&h, "epochs"), lm_r.train.epochs as f32);
    assert_eq!(num(&h, "batch-size"), lm_r.data.batch as f32);
    assert_eq!(num(&h, "bptt"), lm_r.data.bptt as f32);
    assert_eq!(num(&h, "embed"), lm_r.model.embed as f32);
    assert_eq!(num(&h, "layers"), lm_r.model.rnn.layers as f32);
    assert_eq!(help_default(&h, "cell").unwrap(), "lstm");
    let tag_r = tag::recipe::TagRun::recipe(None);
    let h = help(&["tag", "train", "--help"]);
    assert_eq!(num(&h, "lr"), tag_r.train.lr);
    assert_eq!(num(&h, "batch-size"), tag_r.data.batch as f32);
    assert_eq!(num(&h, "hidden"), tag_r.model.rnn.hidden as f32);
    assert_eq!(num(&h, "embed"), tag_r.model.word_dim as f32);
    assert_eq!(num(&h, "dropout"), tag_r.model.dropout);
    let cls_r = classify::recipe::ClsRun::recipe();
    let h = help(&["classify", "train", "--help"]);
    assert_eq!(num(&h, "embed"), cls_r.model.embed as f32);
    assert_eq!(num(&h, "hidden"), cls_r.model.rnn.hidden as f32);
    assert_eq!(num(&h, "epochs"), cls_r.train.epochs as f32);
    let tr_r = translate::recipe::TrRun::recipe();
    let h = help(&["translate", "train", "--help"]);
    assert_eq!(num(&h, "hidden"), tr_r.model.encoder.hidden as f32);
    assert_eq!(num(&h, "decoder-hidden"), tr_r.model.decoder_hidden as f32);
    assert_eq!(num(&h, "batch-size"), tr_r.data.batch as f32);
    assert_eq!(
        help_default(&h, "attention").as_deref(),
        tr_r.model
            .attention
            .map(|a| serde_json::to_value(a).unwrap())
            .as_ref()
            .and_then(|v| v.as_str())
    );
    let d = translate::Decoding::default();
    let h = help(&["translate", "predict", "--help"]);
    assert_eq!(num(&h, "beam"), d.beam as f32);
    assert_eq!(num(&h, "max-len-a"), d.max_len_a);
    assert_eq!(num(&h, "max-len-b"), d.max_len_b as f32);
    let s = lm::Sampling::default();
    let h = help(&["lm", "generate", "--help"]);
    assert_eq!(num(&h, "temperature"), s.temperature);
    assert_eq!(num(&h, "max-tokens"), lm::MAX_TOKENS as f32);
    let h = help(&["lm", "eval", "--help"]);
    assert_eq!(num(&h, "bptt"), lm_r.data.eval_bptt as f32);
}
