//! End-to-end tests of `rnnkit lm`: train, evaluate and generate on small real text; the
//! layer-normalised LSTM; determinism; pretrained embeddings; a PyTorch-exported model;
//! rerunning a config.json.

mod common;

use common::*;
use std::path::Path;

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
