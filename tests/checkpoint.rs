//! End-to-end tests of checkpoint loading: inconsistent metadata and hostile safetensors
//! files are one-line errors with exit status 2, never a panic.

mod common;

use common::*;
use std::path::Path;

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
