//! Parity with PyTorch: fixtures written by tools/make_fixtures.py (torch 2.15) hold weights,
//! inputs, outputs, final states and every gradient; rnnkit must match them to 1e-4
//! relative (max-abs error over the tensor / max-abs of the reference).

use rand::SeedableRng;
use rnnkit::engine::cell::CellKind;
use rnnkit::engine::embedding::Embedding;
use rnnkit::engine::init::Init;
use rnnkit::engine::linear::Linear;
use rnnkit::engine::loss::{cross_entropy_backward, Reduction, IGNORE};
use rnnkit::engine::norm::LayerNorm;
use rnnkit::engine::optim::{OptimKind, Optimizer};
use rnnkit::engine::param::{Module, Param};
use rnnkit::engine::rnn::{Pass, Rnn, RnnConfig, State};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;

struct Fixture {
    t: HashMap<String, Vec<f32>>,
    meta: serde_json::Value,
}

fn load(name: &str) -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.safetensors"));
    let buf = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, md) = SafeTensors::read_metadata(&buf).unwrap();
    let meta = serde_json::from_str(&md.metadata().as_ref().unwrap()["case"]).unwrap();
    let st = SafeTensors::deserialize(&buf).unwrap();
    let t = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        })
        .collect();
    Fixture { t, meta }
}

impl Fixture {
    fn get(&self, k: &str) -> &[f32] {
        self.t
            .get(k)
            .unwrap_or_else(|| panic!("fixture has no {k}"))
    }
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let err = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err / scale <= 1e-4,
        "{what}: max error {err} vs scale {scale}"
    );
}

#[test]
fn recurrent_layers_match_pytorch() {
    // Two threads: bidirectional layers run their directions at once, one thread each.
    // The time loop split over hidden units (directions in turn, or one direction on two
    // threads) is checked against this schedule in `engine::rnn`'s tests.
    rnnkit::engine::ops::set_threads(2);
    let mut n = 0;
    let mut names = Vec::new();
    for cell in ["rnn", "rnn_relu", "lstm", "gru"] {
        for layers in [1, 2] {
            for bi in ["uni", "bi"] {
                for var in ["eq", "var"] {
                    names.push((
                        cell,
                        layers,
                        bi,
                        var,
                        format!("rnn_{cell}_l{layers}_{bi}_{var}"),
                    ));
                }
            }
        }
    }
    for cell in ["lstm", "gru"] {
        names.push((cell, 1, "bi", "var", format!("rnn_{cell}_l1_bi_var_wide")));
    }
    {
        {
            {
                for (cell, layers, bi, var, name) in names {
                    let f = load(&name);
                    let m = &f.meta;
                    let (t, b, i, h) = (
                        m["T"].as_u64().unwrap() as usize,
                        m["B"].as_u64().unwrap() as usize,
                        m["I"].as_u64().unwrap() as usize,
                        m["H"].as_u64().unwrap() as usize,
                    );
                    let kind = CellKind::parse(cell).unwrap();
                    let mut cfg = RnnConfig::new(kind, i, h, layers);
                    cfg.bidirectional = bi == "bi";
                    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
                    let mut rnn = Rnn::new("rnn", cfg, Init::Pytorch, 0.0, &mut rng);
                    rnn.visit_mut(&mut |p| p.w.copy_from_slice(f.get(&p.name)));
                    let lengths: Vec<usize> =
                        f.get("lengths").iter().map(|&v| v as usize).collect();
                    let lstm = kind == CellKind::Lstm;
                    let st = State {
                        h: f.get("h0").to_vec(),
                        c: if lstm {
                            f.get("c0").to_vec()
                        } else {
                            Vec::new()
                        },
                    };
                    let lens = (var == "var").then_some(&lengths[..]);
                    let pass = Pass::train(t, b).lengths(lens).state(&st);
                    let (y, fin, cache) = rnn.forward(f.get("x"), pass, &mut rng);
                    close(&format!("{name} y"), &y, f.get("y"));
                    close(&format!("{name} h_n"), &fin.h, f.get("h_n"));
                    let ds = State {
                        h: f.get("rh").to_vec(),
                        c: if lstm {
                            f.get("rc").to_vec()
                        } else {
                            Vec::new()
                        },
                    };
                    if lstm {
                        close(&format!("{name} c_n"), &fin.c, f.get("c_n"));
                    }
                    let (dx, d0) = rnn.backward(cache, f.get("ry"), Some(&ds));
                    close(&format!("{name} grad x"), &dx, f.get("grad.x"));
                    close(&format!("{name} grad h0"), &d0.h, f.get("grad.h0"));
                    if lstm {
                        close(&format!("{name} grad c0"), &d0.c, f.get("grad.c0"));
                    }
                    rnn.visit(&mut |p| {
                        close(
                            &format!("{name} grad {}", p.name),
                            &p.g,
                            f.get(&format!("grad.{}", p.name)),
                        )
                    });
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 34);
}

#[test]
fn layer_norm_linear_embedding_match_pytorch() {
    let f = load("layer_norm");
    let mut ln = LayerNorm::new("ln", 5);
    ln.weight.w.copy_from_slice(f.get("weight"));
    ln.bias.w.copy_from_slice(f.get("bias"));
    let mut y = f.get("x").to_vec();
    let c = ln.forward(&mut y);
    close("layer_norm y", &y, f.get("y"));
    let mut d = f.get("r").to_vec();
    ln.backward(&c, &mut d);
    close("layer_norm grad x", &d, f.get("grad.x"));
    close("layer_norm grad weight", &ln.weight.g, f.get("grad.weight"));
    close("layer_norm grad bias", &ln.bias.g, f.get("grad.bias"));

    let f = load("linear");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut lin = Linear::new("lin", 5, 9, true, &mut rng);
    lin.weight.w.copy_from_slice(f.get("weight"));
    lin.bias.as_mut().unwrap().w.copy_from_slice(f.get("bias"));
    let mut y = vec![0.0; 7 * 9];
    lin.forward(f.get("x"), &mut y);
    close("linear y", &y, f.get("y"));
    let mut dx = vec![0.0; 7 * 5];
    lin.backward(f.get("x"), f.get("r"), Some(&mut dx));
    close("linear grad x", &dx, f.get("grad.x"));
    close("linear grad weight", &lin.weight.g, f.get("grad.weight"));
    close(
        "linear grad bias",
        &lin.bias.as_ref().unwrap().g,
        f.get("grad.bias"),
    );

    let f = load("embedding");
    let mut emb = Embedding::new("emb", 9, 5, &mut rng);
    emb.weight.w.copy_from_slice(f.get("weight"));
    let ids: Vec<u32> = f.get("ids").iter().map(|&v| v as u32).collect();
    let mut y = vec![0.0; 7 * 5];
    emb.forward(&ids, &mut y);
    close("embedding y", &y, f.get("y"));
    emb.backward(&ids, f.get("r"));
    close("embedding grad", &emb.weight.g, f.get("grad.weight"));
}

#[test]
fn cross_entropy_matches_pytorch() {
    for (red, r) in [("mean", Reduction::Mean), ("sum", Reduction::Sum)] {
        let f = load(&format!("cross_entropy_{red}"));
        let targets: Vec<u32> = f
            .get("targets")
            .iter()
            .map(|&v| if v < 0.0 { IGNORE } else { v as u32 })
            .collect();
        let mut g = f.get("logits").to_vec();
        let out = cross_entropy_backward(&mut g, &targets, 9, r, 1.0, None);
        let loss = if r == Reduction::Mean {
            out.sum / out.count as f64
        } else {
            out.sum
        };
        close(
            &format!("cross_entropy {red} loss"),
            &[loss as f32],
            f.get("loss"),
        );
        close(
            &format!("cross_entropy {red} grad"),
            &g,
            f.get("grad.logits"),
        );
    }
}

/// Two loose parameters for the optimizer check.
struct Pair(Vec<Param>);

impl Module for Pair {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        self.0.iter().for_each(f);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        self.0.iter_mut().for_each(f);
    }
}

#[test]
fn optimizers_with_clipping_match_pytorch() {
    let f = load("optimizers");
    let max_norm = f.meta["max_norm"].as_f64().unwrap() as f32;
    let adam = |decoupled: bool, weight_decay: f32| {
        let (beta1, beta2, eps) = (0.9, 0.999, 1e-8);
        if decoupled {
            OptimKind::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
        } else {
            OptimKind::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
        }
    };
    for (name, kind, lr) in [
        ("sgd", OptimKind::Sgd { momentum: 0.0 }, 0.5),
        ("momentum", OptimKind::Sgd { momentum: 0.9 }, 0.1),
        ("adam", adam(false, 0.01), 0.01),
        ("adamw", adam(true, 0.1), 0.01),
    ] {
        let mut m = Pair(vec![Param::zeros("p", &[5, 4]), Param::zeros("q", &[3])]);
        m.0[0].w = f.get("p0").to_vec();
        m.0[1].w = f.get("q0").to_vec();
        let mut opt = Optimizer::new(kind, lr);
        for s in 0..3 {
            m.0[0].g = f.get(&format!("grad{s}.p")).to_vec();
            m.0[1].g = f.get(&format!("grad{s}.q")).to_vec();
            opt.step(&mut m, max_norm);
            close(
                &format!("{name} step {s} p"),
                &m.0[0].w,
                f.get(&format!("{name}{s}.p")),
            );
            close(
                &format!("{name} step {s} q"),
                &m.0[1].w,
                f.get(&format!("{name}{s}.q")),
            );
            assert!(
                m.0.iter().all(|p| p.g.iter().all(|&g| g == 0.0)),
                "{name}: gradients not cleared"
            );
        }
    }
}

/// The CRF against pytorch-crf 0.7.2 (tools/make_tag_fixtures.py): the log-likelihood of
/// a batch with sequences of different lengths, every gradient, and the Viterbi paths.
#[test]
fn crf_matches_pytorch_crf() {
    use rnnkit::engine::crf::Crf;
    let f = load("crf");
    let (t, k) = (
        f.meta["T"].as_u64().unwrap() as usize,
        f.meta["K"].as_u64().unwrap() as usize,
    );
    let lengths: Vec<usize> = serde_json::from_value(f.meta["lengths"].clone()).unwrap();
    let mut crf = Crf::new("crf", k, &mut rand::rngs::StdRng::seed_from_u64(0));
    crf.start.w = f.get("start_transitions").to_vec();
    crf.end.w = f.get("end_transitions").to_vec();
    crf.trans.w = f.get("transitions").to_vec();
    let em = f.get("emissions");
    let tags: Vec<u32> = f.get("tags").iter().map(|&v| v as u32).collect();
    let mut dem = vec![0.0; em.len()];
    // pytorch-crf returns the log-likelihood; rnnkit minimises its negative.
    let nll = crf.nll_backward(em, &tags, &lengths, t, -1.0, &mut dem);
    let llh = f.meta["llh"].as_f64().unwrap();
    assert!((-nll - llh).abs() < 1e-4 * llh.abs(), "{} vs {llh}", -nll);
    close("grad.emissions", &dem, f.get("grad.emissions"));
    close("grad.start", &crf.start.g, f.get("grad.start_transitions"));
    close("grad.end", &crf.end.g, f.get("grad.end_transitions"));
    close("grad.transitions", &crf.trans.g, f.get("grad.transitions"));
    let paths: Vec<Vec<u32>> = serde_json::from_value(f.meta["paths"].clone()).unwrap();
    assert_eq!(crf.decode(em, &lengths), paths);
}

/// Entity scores against seqeval 1.2.2 on random tag files, ill-formed sequences (I- after
/// O, type changes inside an entity), BIOES and a Cyrillic type included.
#[test]
fn ner_scores_match_seqeval() {
    use rnnkit::metrics::NerCounter;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seqeval.json");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (i, case) in fx["cases"].as_array().unwrap().iter().enumerate() {
        let gold: Vec<Vec<String>> = serde_json::from_value(case["gold"].clone()).unwrap();
        let pred: Vec<Vec<String>> = serde_json::from_value(case["pred"].clone()).unwrap();
        let mut n = NerCounter::default();
        for (g, p) in gold.iter().zip(&pred) {
            n.add(g, p);
        }
        let s = n.scores();
        let near = |a: f64, k: &str| (a - case[k].as_f64().unwrap()).abs() < 1e-9;
        assert!(
            near(s.precision, "precision") && near(s.recall, "recall"),
            "case {i}"
        );
        assert!(near(s.f1, "f1") && near(s.accuracy, "accuracy"), "case {i}");
        let want = case["per_type"].as_object().unwrap();
        assert_eq!(want.len(), s.per_type.len(), "case {i}: types");
        for (ty, w) in want {
            let g = &s.per_type[ty];
            for (k, v) in [
                ("precision", g.precision),
                ("recall", g.recall),
                ("f1", g.f1),
            ] {
                assert!(
                    (v - w[k].as_f64().unwrap()).abs() < 1e-9,
                    "case {i} {ty} {k}"
                );
            }
            assert_eq!(
                g.support as u64,
                w["support"].as_u64().unwrap(),
                "case {i} {ty}"
            );
        }
    }
}

/// BLEU, its n-gram precisions, brevity penalty and lengths, and chrF, against sacreBLEU
/// (tools/make_bleu_fixtures.py) on generated corpora in five scripts, cased and lowercased,
/// to 1e-9 (the acceptance bar is 0.01); and its 13a tokenizer line by line.
#[test]
fn bleu_and_chrf_match_sacrebleu() {
    use rnnkit::metrics::{bleu, chrf, tokenize_13a};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sacrebleu.json");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for pair in fx["tokenize_13a"].as_array().unwrap() {
        assert_eq!(
            tokenize_13a(pair[0].as_str().unwrap()),
            pair[1].as_str().unwrap()
        );
    }
    for (i, c) in fx["cases"].as_array().unwrap().iter().enumerate() {
        let hyps: Vec<String> = serde_json::from_value(c["hyps"].clone()).unwrap();
        let refs: Vec<String> = serde_json::from_value(c["refs"].clone()).unwrap();
        let near = |a: f64, k: &str| {
            let w = c[k].as_f64().unwrap();
            assert!(
                (a - w).abs() < 1e-9,
                "case {i} ({}) {k}: {a} vs {w}",
                c["lang"]
            );
        };
        let b = bleu(&hyps, &refs, false);
        near(b.bleu, "bleu");
        near(b.brevity_penalty, "bp");
        assert_eq!(b.sys_len as u64, c["sys_len"].as_u64().unwrap(), "case {i}");
        assert_eq!(b.ref_len as u64, c["ref_len"].as_u64().unwrap(), "case {i}");
        for (n, p) in b.precisions.iter().enumerate() {
            assert!(
                (p - c["precisions"][n].as_f64().unwrap()).abs() < 1e-9,
                "case {i} p{n}"
            );
        }
        near(bleu(&hyps, &refs, true).bleu, "bleu_lc");
        near(chrf(&hyps, &refs, false), "chrf");
        near(chrf(&hyps, &refs, true), "chrf_lc");
    }
}
