//! The library's own run and trace, for every task, as a Rust program uses them: start a
//! run from a recipe and a folder, resume it to more epochs, read the summary back, load
//! the best checkpoint and trace a text. Tiny models on small generated corpora, so the
//! test needs no data directory.

mod common;

use common::tmp;
use rnnkit::engine::cell::CellKind;
use rnnkit::engine::trace::StackTrace;
use rnnkit::run::{self, Budgets, Options, Recipe};
use rnnkit::task::trace::{TaskTrace, Trace};
use std::path::{Path, PathBuf};

/// Trains `recipe` for one epoch into `out`, resumes it to two, and checks what the run
/// returns against summary.json and config.json.
fn start_and_resume<R: Recipe>(mut recipe: R, out: &Path) -> serde_json::Value {
    let t = recipe.train_config();
    (t.epochs, t.threads, t.log_every) = (1, Some(1), 1);
    let first = run::start(recipe, out, Options::default()).expect("start");
    assert_eq!(first.values["epochs_done"], 1, "{}", first.values);
    let budgets = Budgets {
        epochs: Some(2),
        ..Default::default()
    };
    let second = run::resume::<R>(out, &budgets, Options::default()).expect("resume");
    assert_eq!(second.values["epochs_done"], 2, "{}", second.values);
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(on_disk, second.values);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["task"], R::TASK);
    assert_eq!(config["run"]["train"]["epochs"], 2);
    // A folder that holds a run is refused unless resumed or overwritten.
    let again: R = run::read_config(&out.join("config.json")).expect("read config");
    let e = run::start(again, out, Options::default()).expect_err("refused");
    assert!(e.to_string().contains("holds a run already"), "{e}");
    second.values
}

/// Checks the parts every trace shares: one state row a token, per layer and direction,
/// gates of the cell's width, and the stack output equal to `forward` bit for bit.
fn check_stack(tr: &Trace, layers: usize, dirs: usize, forward: &[f32]) {
    let st: &StackTrace = &tr.stack;
    let (t, h) = (st.t, st.hidden);
    assert_eq!(tr.tokens.len(), t);
    assert_eq!(st.dirs.len(), layers * dirs);
    let g = st.cell.gates();
    assert_eq!(tr.gate_names.len(), if g > 1 { g } else { 0 });
    for d in &st.dirs {
        assert_eq!(d.h.len(), t * h);
        assert_eq!(d.gates.len(), if g > 1 { t * g * h } else { 0 });
        assert!(d.h.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
        assert!(d.gates.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
    assert_eq!(st.output, forward, "trace and forward outputs differ");
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

#[test]
fn language_model_runs_resumes_and_traces() {
    use rnnkit::task::lm::{self, recipe::LmRun};
    let dir = tmp("lib-lm");
    let text: String = (0..300)
        .map(|i| {
            format!(
                "the cat {} on the mat number {}\n",
                ["sat", "ran", "lay"][i % 3],
                i % 7
            )
        })
        .collect();
    let mut r = LmRun::recipe(None);
    r.data.train = Some(write(&dir.join("train.txt"), &text));
    r.data.valid = Some(write(&dir.join("valid.txt"), &text[..2000]));
    r.data.tokenizer = rnnkit::text::tokenizer::Kind::Char;
    (
        r.data.batch,
        r.data.bptt,
        r.data.eval_batch,
        r.data.eval_bptt,
    ) = (4, 10, 4, 10);
    (r.model.embed, r.model.rnn.hidden, r.model.rnn.layers) = (16, 16, 2);
    r.model.rnn.cell = CellKind::Gru;
    let v = start_and_resume(r, &dir.join("run"));
    assert!(v["valid_ppl"].as_f64().unwrap() < 40.0, "{v}");
    let (mut model, tok) = lm::load(&dir.join("run/model.safetensors")).unwrap();
    let tr = lm::trace(&mut model, &tok, "the cat sat", 5).unwrap();
    let ids = tok.encode("the cat sat");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let (y, _, _) = model.enc.forward(
        &ids,
        rnnkit::engine::rnn::Pass::eval(ids.len(), 1),
        &mut rng,
    );
    check_stack(&tr, 2, 1, &y);
    let TaskTrace::NextTokens { next } = &tr.task else {
        panic!("an LM traces next tokens")
    };
    assert_eq!(next.len(), ids.len());
    for row in next {
        assert_eq!(row.len(), 5);
        assert!(row.windows(2).all(|w| w[0].1 >= w[1].1));
    }
    // The top token after each prefix is the argmax of the logits generation samples from.
    let state = model.enc.rnn.zero_state(1);
    let (logits, _) = model.logits(&ids, ids.len(), 1, &state, &mut rng);
    for (row, top) in logits.chunks(model.cfg.vocab).zip(next) {
        let best = (0..row.len()).fold(0, |a, i| if row[i] > row[a] { i } else { a });
        assert_eq!(top[0].0, tok.token_text(best as u32, true));
    }
    assert!(lm::trace(&mut model, &tok, "", 5).is_err());
    // Scores: the kind of line it trained on is likelier than letters it never saw together.
    let mut loaded = lm::Loaded::load(&dir.join("run/model.safetensors")).unwrap();
    let sc = loaded
        .score(&["the cat sat on the mat number 3", "xqzv kjwq pfgh zzxq"])
        .unwrap();
    assert_eq!(sc[0].tokens, 30);
    assert!(sc[0].loss < sc[1].loss, "{sc:?}");
    assert!(
        sc[0].bpc.is_some(),
        "a character model reports bits per character"
    );
    assert!(loaded.score(&["t"]).is_err(), "one token predicts nothing");
    let bad = lm::Sampling {
        temperature: f32::NAN,
        ..lm::Sampling::default()
    };
    assert!(loaded.generate("the", 5, &bad, 1, |_| true).is_err());
}

/// A CoNLL corpus of `n` sentences with PER, LOC and ORG entities.
fn conll(n: usize) -> String {
    let (names, places) = (["Peter", "Anna", "Blair"], ["Paris", "Bonn", "London"]);
    (0..n)
        .map(|i| {
            format!(
                "{} B-PER\nsaid O\nin O\n{} B-LOC\nto O\nUN B-ORG\n. O\n\n",
                names[i % 3],
                places[(i / 3) % 3]
            )
        })
        .collect()
}

#[test]
fn tagger_runs_resumes_and_traces() {
    use rnnkit::task::tag::{self, recipe::TagRun};
    let dir = tmp("lib-tag");
    let mut r = TagRun::recipe(None);
    r.data.train = Some(write(&dir.join("train.conll"), &conll(60)));
    r.data.valid = Some(write(&dir.join("valid.conll"), &conll(12)));
    r.data.batch = 8;
    (r.model.word_dim, r.model.char_dim, r.model.char_hidden) = (12, 8, 6);
    r.model.rnn.hidden = 10;
    let v = start_and_resume(r, &dir.join("run"));
    assert!(v["valid_f1"].as_f64().is_some(), "{v}");
    let (mut model, vocabs) = tag::load(&dir.join("run/model.safetensors")).unwrap();
    let tr = tag::trace(&mut model, &vocabs, "Anna said in Paris .").unwrap();
    let enc = vocabs
        .encode(&tr.tokens, &[])
        .expect("the trace's words encode");
    let (stack, _, path) = model.trace_encoded(&enc);
    check_stack(&tr, model.cfg.rnn.layers, 2, &stack.output);
    // The marginals of the predicted tags are what `tag predict --probs` reports.
    let conf = model.confidences(&[&enc], std::slice::from_ref(&path));
    let TaskTrace::TagMarginals {
        labels,
        marginals,
        predicted,
    } = &tr.task
    else {
        panic!("a tagger traces marginals")
    };
    assert_eq!(marginals.len(), 5 * labels.len());
    for row in marginals.chunks(labels.len()) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{row:?}");
    }
    assert_eq!(predicted.len(), 5);
    for (i, &y) in path.iter().enumerate() {
        assert_eq!(conf[0][i], marginals[i * labels.len() + y as usize]);
    }
}

#[test]
fn classifier_runs_resumes_and_traces() {
    use rnnkit::task::classify::{self, recipe::ClsRun, Pooling};
    let dir = tmp("lib-cls");
    let rows: String = (0..200)
        .map(|i| {
            let (w, l) = [("good fine great", "pos"), ("bad awful poor", "neg")][i % 2];
            format!(
                "a {} film {}\t{l}\n",
                w.split(' ').nth(i % 3).unwrap(),
                i % 5
            )
        })
        .collect();
    let mut r = ClsRun::recipe();
    r.data.train = Some(write(
        &dir.join("train.tsv"),
        &format!("sentence\tlabel\n{rows}"),
    ));
    r.data.valid = Some(write(
        &dir.join("valid.tsv"),
        &format!("sentence\tlabel\n{}", &rows[..800]),
    ));
    r.data.batch = 16;
    (r.model.embed, r.model.rnn.hidden) = (12, 12);
    r.model.pooling = Pooling::Attention;
    r.train.lr = 0.01;
    let v = start_and_resume(r, &dir.join("run"));
    assert!(v["valid_accuracy"].as_f64().unwrap() > 0.9, "{v}");
    let (mut model, tok, lower, labels) =
        classify::load(&dir.join("run/model.safetensors")).unwrap();
    let tr = classify::trace(&mut model, &tok, lower, &labels, "a great film").unwrap();
    let (stack, _, _) = model.trace_ids(&classify::encode(&tok, lower, "a great film"));
    check_stack(
        &tr,
        model.cfg.rnn.layers,
        model.cfg.rnn.dirs(),
        &stack.output,
    );
    let TaskTrace::Pooling { weights, probs, .. } = &tr.task else {
        panic!("a classifier traces pooling")
    };
    assert_eq!(weights.len(), 3);
    assert!((weights.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    let p = model.probs(&[&classify::encode(&tok, lower, "a great film")[..]], None);
    assert_eq!(&p[..], &probs[..], "trace's probabilities are predict's");
}

#[test]
fn translator_runs_resumes_and_traces() {
    use rnnkit::task::translate::{self as tr, recipe::TrRun};
    let dir = tmp("lib-tr");
    let words = [
        ("hund", "dog"),
        ("katze", "cat"),
        ("haus", "house"),
        ("baum", "tree"),
    ];
    let (mut src, mut tgt) = (String::new(), String::new());
    for i in 0..200 {
        let (a, b) = (words[i % 4], words[(i / 4) % 4]);
        src += &format!("der {} und der {}\n", a.0, b.0);
        tgt += &format!("the {} and the {}\n", a.1, b.1);
    }
    let pair = |n: &str, s: &str, t: &str| {
        (
            write(&dir.join(format!("{n}.de")), s),
            write(&dir.join(format!("{n}.en")), t),
        )
    };
    let mut r = TrRun::recipe();
    r.data.train = Some(pair("train", &src, &tgt));
    let cut = |s: &str| s.lines().take(20).collect::<Vec<_>>().join("\n") + "\n";
    r.data.valid = Some(pair("valid", &cut(&src), &cut(&tgt)));
    r.data.batch = 16;
    (
        r.model.embed,
        r.model.encoder.hidden,
        r.model.decoder_hidden,
    ) = (12, 12, 24);
    (r.model.attn_dim, r.train.lr) = (12, 0.01);
    let v = start_and_resume(r, &dir.join("run"));
    assert!(v["valid_bleu"].as_f64().is_some(), "{v}");
    let mut task = tr::load(&dir.join("run/model.safetensors")).unwrap();
    use rnnkit::task::translate::Decoding;
    let d = Decoding::default();
    let zero_beam = Decoding { beam: 0, ..d };
    assert!(task.translate_texts(&["der hund"], &zero_beam).is_err());
    let trace = task.trace("der hund und der baum", &d).unwrap();
    let (ids, _) = task.encode_src("der hund und der baum");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let (y, _, _) = task.model.enc.forward(
        &ids,
        rnnkit::engine::rnn::Pass::eval(ids.len(), 1),
        &mut rng,
    );
    let enc_cfg = &task.model.cfg.encoder;
    check_stack(&trace, enc_cfg.layers, enc_cfg.dirs(), &y);
    let rnnkit::task::trace::TaskTrace::Attention {
        target, attention, ..
    } = &trace.task
    else {
        panic!("a translator traces attention")
    };
    assert_eq!(attention.len(), target.len() * ids.len());
    for row in attention.chunks(ids.len()) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{row:?}");
    }
}
