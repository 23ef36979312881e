//! The last hostile inputs (#30): non-finite word vectors, a BPE vocabulary beyond reason,
//! degenerate bench sizes, `data check --format vectors`, and a UTF-8 byte-order mark in
//! every input format. Each is a one-line error with status 2 and nothing written, or the
//! input handled as it would be without the mark.

mod common;
use common::*;

const BOM: &str = "\u{feff}";

/// Word vectors with a NaN or an infinity, given to any task as `--pretrained`, are refused
/// before the run starts, naming the line; no run folder is made.
#[test]
fn non_finite_pretrained_vectors_are_refused_naming_the_line() {
    let d = tmp("nanvec");
    let (train, valid) = corpus(&d);
    for (i, bad) in ["nan", "inf", "-inf"].iter().enumerate() {
        let vec = d.join(format!("v{i}.txt"));
        std::fs::write(&vec, format!("the 0.1 0.2 0.3 0.4\nof 0.5 {bad} 0.1 0.2\n")).unwrap();
        let out = d.join(format!("run{i}"));
        let o = run(&[
            "lm",
            "train",
            "--train",
            &s(&train),
            "--valid",
            &s(&valid),
            "--tokenizer",
            "word",
            "--embed",
            "4",
            "--pretrained",
            &s(&vec),
            "--epochs",
            "1",
            "--out",
            &s(&out),
        ]);
        assert_user_error(&o, &format!("v{i}.txt:2:"));
        assert!(String::from_utf8_lossy(&o.stderr).contains("finite"));
        assert!(!out.join("config.json").exists(), "nothing written");
    }
}

/// `data check --format vectors` checks every value and the header against the rows.
#[test]
fn data_check_vectors_checks_values_and_header() {
    let d = tmp("checkvec");
    let cases = [
        ("ok.txt", "2 3\nthe 1 2 3\ncat 4 5 6\n", None),
        (
            "nan.txt",
            "the 1 2 3\ncat 4 nan 6\n",
            Some(("nan.txt:2:", "finite")),
        ),
        (
            "count.txt",
            "5 3\nthe 1 2 3\ncat 4 5 6\n",
            Some(("count.txt:1:", "5 vectors")),
        ),
        (
            "width.txt",
            "2 4\nthe 1 2 3\ncat 4 5 6\n",
            Some(("width.txt:2:", "expected 4")),
        ),
    ];
    for (name, body, err) in cases {
        let f = d.join(name);
        std::fs::write(&f, body).unwrap();
        let o = run(&["data", "check", "--format", "vectors", "--json", &s(&f)]);
        match err {
            None => {
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                let j = last_json(&o);
                assert_eq!((j["words"].as_u64(), j["dim"].as_u64()), (Some(2), Some(3)));
            }
            Some((at, what)) => {
                assert_user_error(&o, at);
                assert!(String::from_utf8_lossy(&o.stderr).contains(what), "{name}");
            }
        }
    }
}

/// A BPE vocabulary far beyond what any corpus gives is refused (it aborted the process
/// in the tokenizers crate's allocation before); a large but possible one is trained.
#[test]
fn tokenizer_train_with_an_enormous_vocabulary_is_refused() {
    let d = tmp("bigvocab");
    let (train, _) = corpus(&d);
    for n in ["1000000000000", "18446744073709551615", "2000000"] {
        let o = run(&[
            "tokenizer",
            "train",
            "--kind",
            "bpe",
            "--vocab-size",
            n,
            "--out",
            &s(&d.join("t.json")),
            &s(&train),
        ]);
        assert_user_error(&o, "vocabulary size");
        assert!(!d.join("t.json").exists());
    }
    let o = run(&[
        "tokenizer",
        "train",
        "--kind",
        "bpe",
        "--vocab-size",
        "1048576",
        "--out",
        &s(&d.join("ok.json")),
        &s(&train),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `bench` refuses sizes that leave nothing to measure.
#[test]
fn bench_refuses_degenerate_sizes() {
    for (args, needle) in [
        (&["bench", "lm", "--vocab", "1"][..], "--vocab"),
        (&["bench", "lm", "--vocab", "0"], "--vocab"),
        (&["bench", "lm", "--hidden", "0"], "hidden"),
        (&["bench", "lm", "--embed", "0"], "embed"),
        (&["bench", "lm", "--layers", "0"], "layer"),
        (&["bench", "lm", "--batch-size", "0"], "--batch-size"),
        (&["bench", "generate", "--steps", "0"], "--steps"),
        (&["bench", "tag", "--batch-size", "0"], "--batch-size"),
        (&["bench", "classify", "--steps", "0"], "--steps"),
        (&["bench", "translate", "--beam", "0"], "--beam"),
    ] {
        assert_user_error(&run(args), needle);
    }
}

/// A byte-order mark at the start of a file is skipped in every format: the file reads as
/// the same file without it.
#[test]
fn a_byte_order_mark_is_skipped_in_every_format() {
    let d = tmp("bom");
    let write = |name: &str, body: &str| {
        let p = d.join(name);
        std::fs::write(&p, format!("{BOM}{body}")).unwrap();
        s(&p)
    };
    let check = |format: &str, files: &[&str]| {
        let mut args = vec!["data", "check", "--format", format, "--json"];
        args.extend(files);
        let o = run(&args);
        assert!(
            o.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        last_json(&o)
    };
    assert_eq!(check("text", &[&write("t.txt", "ab\ncd\n")])["chars"], 6);
    let conll = check("conll", &[&write("c.txt", "EU B-ORG\nrejects O\n\n")]);
    assert_eq!(conll["tokens"], 2);
    let tsv = check(
        "labelled",
        &[&write("l.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")],
    );
    assert_eq!(tsv["sentences"], 2);
    let par = check(
        "parallel",
        &[&write("p.de", "Hund\n"), &write("p.en", "dog\n")],
    );
    assert_eq!(par["pairs"], 1);
    assert_eq!(
        check("parallel-tsv", &[&write("p.tsv", "Hund\tdog\n")])["pairs"],
        1
    );
    let v = check("vectors", &[&write("v.txt", "1 2\nthe 1 2\n")]);
    assert_eq!((v["words"].as_u64(), v["dim"].as_u64()), (Some(1), Some(2)));
    // A tokenizer trained on a file with the mark has no token for it.
    let tok = d.join("tok.json");
    let o = run(&[
        "tokenizer",
        "train",
        "--kind",
        "char",
        "--out",
        &s(&tok),
        &write("chars.txt", "abc\n"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = std::fs::read_to_string(&tok).unwrap();
    assert!(
        !json.contains('\u{feff}') && !json.contains("\\ufeff"),
        "{json}"
    );
}
