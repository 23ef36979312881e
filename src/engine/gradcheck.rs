//! Finite-difference gradient checks for every layer and option.
//!
//! Each check wraps a layer and its inputs in a [`Module`] (inputs become parameters, so
//! their gradients are checked too), runs forward+backward once for the analytic
//! gradients, then compares sampled entries with central differences of a loss
//! accumulated in f64.

use super::cell::CellKind;
use super::dropout::DropoutKind;
use super::embedding::Embedding;
use super::init::Init;
use super::linear::Linear;
use super::loss::{cross_entropy, cross_entropy_backward, Reduction, IGNORE};
use super::norm::{BatchNorm, LayerNorm, NormKind};
use super::param::{Module, Param};
use super::rnn::{Pass, Rnn, RnnConfig, State};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn pseudo(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (((i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed.wrapping_mul(97)))
                % 1000) as f32
                / 500.0
                - 1.0
        })
        .collect()
}

fn param(name: &str, shape: &[usize], seed: u32) -> Param {
    let mut p = Param::zeros(name, shape);
    p.w = pseudo(p.len(), seed);
    p
}

/// Checks every unfrozen parameter of `m`; `run(m, backward)` returns the loss and, when
/// `backward`, accumulates the analytic gradients.
pub(crate) fn check<M: Module>(m: &mut M, run: impl Fn(&mut M, bool) -> f64) {
    m.zero_grad();
    run(m, true);
    let mut grads = Vec::new();
    m.visit(&mut |p| grads.push((p.name.clone(), p.frozen, p.g.clone(), p.len())));
    let eps = 2e-3f32;
    for (k, (name, frozen, g, len)) in grads.iter().enumerate() {
        if *frozen {
            continue;
        }
        let stride = (len / 23).max(1);
        for j in (0..*len).step_by(stride) {
            let nudge = |m: &mut M, d: f32| {
                let mut i = 0;
                m.visit_mut(&mut |p| {
                    if i == k {
                        p.w[j] += d;
                    }
                    i += 1;
                });
            };
            let mut central = |e: f32| {
                nudge(m, e);
                let lp = run(m, false);
                nudge(m, -2.0 * e);
                let lm = run(m, false);
                nudge(m, e);
                ((lp - lm) / (2.0 * e as f64)) as f32
            };
            let ana = g[j];
            let rel = |num: f32| (num - ana).abs() / (1.0f32).max(num.abs().max(ana.abs()));
            let mut num = central(eps);
            if rel(num) >= 5e-3 {
                // Where the loss curves sharply (LayerNorm over few units) the O(ε²) error
                // of a central difference shows; Richardson's combination cancels it.
                num = (4.0 * central(eps / 2.0) - num) / 3.0;
            }
            let err = rel(num);
            assert!(err < 5e-3, "{name}[{j}]: numeric {num} vs analytic {ana}");
        }
    }
}

struct RnnHarness {
    rnn: Rnn,
    x: Param,
    h0: Param,
    c0: Param,
    t: usize,
    b: usize,
    lengths: Option<Vec<usize>>,
    dropout_seed: u64,
    with_state: bool,
}

impl Module for RnnHarness {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        self.rnn.visit(f);
        f(&self.x);
        if self.with_state {
            f(&self.h0);
            f(&self.c0);
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        self.rnn.visit_mut(f);
        f(&mut self.x);
        if self.with_state {
            f(&mut self.h0);
            f(&mut self.c0);
        }
    }
}

fn run_rnn(h: &mut RnnHarness, backward: bool) -> f64 {
    let (t, b) = (h.t, h.b);
    let mut rng = StdRng::seed_from_u64(h.dropout_seed);
    let st = h.with_state.then(|| State {
        h: h.h0.w.clone(),
        c: if h.rnn.cfg.cell.has_cell_state() {
            h.c0.w.clone()
        } else {
            Vec::new()
        },
    });
    let pass = Pass {
        state: st.as_ref(),
        ..Pass::train(t, b).lengths(h.lengths.as_deref())
    };
    let (y, fin, cache) = h.rnn.forward(&h.x.w, pass, &mut rng);
    let ry = pseudo(y.len(), 5);
    let rh = pseudo(fin.h.len(), 6);
    let rc = pseudo(fin.c.len(), 7);
    let dot = |a: &[f32], r: &[f32]| {
        a.iter()
            .zip(r)
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum::<f64>()
    };
    // The squared term makes the loss depend on y non-linearly, so BatchNorm's and
    // LayerNorm's input gradients (orthogonal to constants) are exercised too.
    let loss = dot(&y, &ry)
        + 0.5 * y.iter().map(|&v| (v * v) as f64).sum::<f64>()
        + dot(&fin.h, &rh)
        + dot(&fin.c, &rc);
    if backward {
        let dy: Vec<f32> = y.iter().zip(&ry).map(|(v, r)| v + r).collect();
        let ds = State { h: rh, c: rc };
        let (dx, d0) = h.rnn.backward(cache, &dy, Some(&ds));
        h.x.g.iter_mut().zip(&dx).for_each(|(g, d)| *g += d);
        if h.with_state {
            h.h0.g.iter_mut().zip(&d0.h).for_each(|(g, d)| *g += d);
            h.c0.g.iter_mut().zip(&d0.c).for_each(|(g, d)| *g += d);
        }
    }
    loss
}

fn harness(
    cfg: RnnConfig,
    t: usize,
    b: usize,
    lengths: Option<Vec<usize>>,
    with_state: bool,
) -> RnnHarness {
    let mut rng = StdRng::seed_from_u64(3);
    let n = cfg.layers * cfg.dirs() * b * cfg.hidden;
    let input = cfg.input;
    let rnn = Rnn::new("rnn", cfg, Init::Uniform { a: 0.5 }, 0.0, &mut rng);
    RnnHarness {
        rnn,
        x: param("x", &[t, b, input], 1),
        h0: param("h0", &[n], 2),
        c0: param("c0", &[n], 3),
        t,
        b,
        lengths,
        dropout_seed: 9,
        with_state,
    }
}

const CELLS: [CellKind; 4] = [
    CellKind::Rnn,
    CellKind::RnnRelu,
    CellKind::Lstm,
    CellKind::Gru,
];

#[test]
fn every_cell_direction_depth_and_length_mode() {
    for cell in CELLS {
        for layers in [1, 2] {
            for bidirectional in [false, true] {
                for lengths in [None, Some(vec![4, 2, 3])] {
                    for with_state in [false, true] {
                        let mut cfg = RnnConfig::new(cell, 3, 4, layers);
                        cfg.bidirectional = bidirectional;
                        let mut h = harness(cfg, 4, 3, lengths.clone(), with_state);
                        check(&mut h, run_rnn);
                    }
                }
            }
        }
    }
}

/// Ba et al.'s layer-normalised LSTM: every depth, direction, length mode and initial
/// state, and combined with the between-layer options.
#[test]
fn layer_normalised_lstm() {
    for layers in [1, 2] {
        for bidirectional in [false, true] {
            for lengths in [None, Some(vec![4, 2, 3])] {
                for with_state in [false, true] {
                    // H = 8: LN_c over only 4 units can have a tiny variance, whose
                    // curvature would swamp a finite difference in f32.
                    let mut cfg = RnnConfig::new(CellKind::Lstm, 3, 8, layers);
                    cfg.bidirectional = bidirectional;
                    cfg.cell_norm = true;
                    let mut h = harness(cfg, 4, 3, lengths.clone(), with_state);
                    // Non-trivial gains and biases, so their gradients are checked too.
                    h.rnn.visit_mut(&mut |p| {
                        if p.name.contains(".ln_") {
                            let r = pseudo(p.w.len(), p.w.len() as u32);
                            p.w.iter_mut().zip(r).for_each(|(w, r)| *w += 0.5 * r);
                        }
                    });
                    check(&mut h, run_rnn);
                }
            }
        }
    }
    let mut cfg = RnnConfig::new(CellKind::Lstm, 8, 8, 3);
    cfg.cell_norm = true;
    cfg.residual = true;
    cfg.norm = NormKind::Layer;
    cfg.dropout = 0.3;
    let mut h = harness(cfg, 3, 3, Some(vec![3, 1, 2]), true);
    check(&mut h, run_rnn);
}

#[test]
fn residual_norms_and_dropout() {
    for cell in [CellKind::Lstm, CellKind::Gru] {
        for norm in [NormKind::None, NormKind::Layer, NormKind::Batch] {
            for (dropout, kind) in [
                (0.0, DropoutKind::Standard),
                (0.3, DropoutKind::Standard),
                (0.3, DropoutKind::Variational),
            ] {
                for lengths in [None, Some(vec![3, 1, 2])] {
                    let mut cfg = RnnConfig::new(cell, 4, 4, 3);
                    cfg.residual = true;
                    cfg.norm = norm;
                    cfg.dropout = dropout;
                    cfg.dropout_kind = kind;
                    let mut h = harness(cfg, 3, 3, lengths, true);
                    check(&mut h, run_rnn);
                }
            }
        }
    }
}

#[test]
fn padding_steps_leave_state_and_output_alone() {
    let mut cfg = RnnConfig::new(CellKind::Lstm, 3, 4, 2);
    cfg.bidirectional = true;
    let mut h = harness(cfg, 5, 2, Some(vec![5, 2]), false);
    let mut rng = StdRng::seed_from_u64(0);
    let (y, fin, _) = h
        .rnn
        .forward(&h.x.w, Pass::eval(5, 2).lengths(Some(&[5, 2])), &mut rng);
    // The short sequence alone, with T = 2, must give the same outputs and final state.
    let x_short: Vec<f32> = (0..2)
        .flat_map(|t| h.x.w[(t * 2 + 1) * 3..(t * 2 + 2) * 3].to_vec())
        .collect();
    let (y2, fin2, _) = h.rnn.forward(&x_short, Pass::eval(2, 1), &mut rng);
    for t in 0..2 {
        for j in 0..8 {
            assert!((y[(t * 2 + 1) * 8 + j] - y2[t * 8 + j]).abs() < 1e-6);
        }
    }
    for t in 2..5 {
        assert!(y[(t * 2 + 1) * 8..(t * 2 + 2) * 8]
            .iter()
            .all(|&v| v == 0.0));
    }
    for k in 0..4 {
        for j in 0..4 {
            assert!((fin.h[(k * 2 + 1) * 4 + j] - fin2.h[k * 4 + j]).abs() < 1e-6);
            assert!((fin.c[(k * 2 + 1) * 4 + j] - fin2.c[k * 4 + j]).abs() < 1e-6);
        }
    }
}

/// Loose parameters (a layer's weights and its input) checked together.
struct Plain {
    params: Vec<Param>,
}

impl Module for Plain {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        self.params.iter().for_each(f);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        self.params.iter_mut().for_each(f);
    }
}

#[test]
fn linear_embedding_and_cross_entropy() {
    let mut rng = StdRng::seed_from_u64(1);
    let lin = Linear::new("dec", 5, 7, true, &mut rng);
    let emb = Embedding::new("enc", 6, 5, &mut rng);
    let ids: Vec<u32> = vec![1, 4, 4, 0];
    let targets: Vec<u32> = vec![3, IGNORE, 6, 0];
    // `fused`: the bias enters through cross_entropy_backward, as in the LM decoder.
    for (red, fused) in [
        (Reduction::Mean, false),
        (Reduction::Sum, false),
        (Reduction::Mean, true),
    ] {
        let mut m = Plain {
            params: vec![
                emb.weight.clone(),
                lin.weight.clone(),
                lin.bias.clone().unwrap(),
            ],
        };
        check(&mut m, |m: &mut Plain, backward| {
            let mut e = Embedding {
                weight: m.params[0].clone(),
            };
            let mut l = Linear {
                weight: m.params[1].clone(),
                bias: (!(fused && backward)).then(|| m.params[2].clone()),
            };
            let mut x = vec![0.0; 4 * 5];
            e.forward(&ids, &mut x);
            let mut y = vec![0.0; 4 * 7];
            l.forward(&x, &mut y);
            let loss = if backward {
                let mut db = vec![0.0; 7];
                let bias = fused.then_some((&m.params[2].w[..], &mut db[..]));
                let out = cross_entropy_backward(&mut y, &targets, 7, red, 1.5, bias);
                let mut dx = vec![0.0; 4 * 5];
                l.backward(&x, &y, Some(&mut dx));
                e.backward(&ids, &dx);
                m.params[0].g = e.weight.g;
                m.params[1].g = l.weight.g;
                m.params[2].g = l.bias.map_or(db, |b| b.g);
                out.sum
            } else {
                cross_entropy(&mut y, &targets, 7).sum
            };
            match red {
                Reduction::Mean => 1.5 * loss / 3.0,
                Reduction::Sum => 1.5 * loss,
            }
        });
    }
}

#[test]
fn layer_norm_and_batch_norm_alone() {
    let x = param("x", &[6, 5], 4);
    let ln = LayerNorm::new("ln", 5);
    let mut m = Plain {
        params: vec![x.clone(), param("ln.weight", &[5], 8), ln.bias.clone()],
    };
    check(&mut m, |m: &mut Plain, backward| {
        let mut l = LayerNorm {
            weight: m.params[1].clone(),
            bias: m.params[2].clone(),
        };
        let mut y = m.params[0].w.clone();
        let c = l.forward(&mut y);
        let r = pseudo(y.len(), 3);
        let loss: f64 = y
            .iter()
            .zip(&r)
            .map(|(a, b)| (a * b) as f64 + 0.5 * (a * a) as f64)
            .sum();
        if backward {
            let mut dy: Vec<f32> = y.iter().zip(&r).map(|(a, b)| a + b).collect();
            l.backward(&c, &mut dy);
            m.params[0].g = dy;
            m.params[1].g = l.weight.g;
            m.params[2].g = l.bias.g;
        }
        loss
    });
    let valid = vec![true, true, false, true, true, false];
    let mut m = Plain {
        params: vec![x, param("bn.weight", &[5], 8), param("bn.bias", &[5], 9)],
    };
    check(&mut m, |m: &mut Plain, backward| {
        let mut bn = BatchNorm::new("bn", 5);
        bn.weight = m.params[1].clone();
        bn.bias = m.params[2].clone();
        let mut y = m.params[0].w.clone();
        let c = bn.forward(&mut y, &valid, true);
        let r = pseudo(y.len(), 3);
        let loss: f64 = y
            .iter()
            .zip(&r)
            .enumerate()
            .filter(|(i, _)| valid[i / 5])
            .map(|(_, (a, b))| (a * b) as f64 + 0.5 * (a * a) as f64)
            .sum();
        if backward {
            let mut dy: Vec<f32> = y.iter().zip(&r).map(|(a, b)| a + b).collect();
            bn.backward(&c, &mut dy);
            m.params[0].g = dy;
            m.params[1].g = bn.weight.g;
            m.params[2].g = bn.bias.g;
        }
        loss
    });
}

/// The single-step use (T = 1, state carried by the caller, one cache per step, backward
/// in reverse order) gives the same outputs and gradients as one call over the sequence:
/// the decoder of a translator relies on this.
#[test]
fn stepping_one_timestep_at_a_time_matches_the_sequence_call() {
    let variants = CELLS.iter().map(|&c| (c, false));
    for (cell, cell_norm) in variants.chain([(CellKind::Lstm, true)]) {
        let mut cfg = RnnConfig::new(cell, 3, 5, 2);
        cfg.cell_norm = cell_norm;
        let mut seq = harness(cfg, 4, 2, None, true);
        let mut stp = harness(seq.rnn.cfg.clone(), 4, 2, None, true);
        let (t, b) = (4, 2);
        let mut rng = StdRng::seed_from_u64(0);
        let st0 = State {
            h: seq.h0.w.clone(),
            c: if cell.has_cell_state() {
                seq.c0.w.clone()
            } else {
                Vec::new()
            },
        };
        let (y, fin, cache) = seq
            .rnn
            .forward(&seq.x.w, Pass::train(t, b).state(&st0), &mut rng);
        let dy = pseudo(y.len(), 11);
        let (dx, d0) = seq.rnn.backward(cache, &dy, None);
        let mut st = st0.clone();
        let mut caches = Vec::new();
        let w = 3 * b;
        for k in 0..t {
            let pass = Pass::train(1, b).state(&st);
            let (yk, s2, c) = stp
                .rnn
                .forward(&stp.x.w[k * w..(k + 1) * w], pass, &mut rng);
            assert!(yk
                .iter()
                .zip(&y[k * 5 * b..(k + 1) * 5 * b])
                .all(|(a, b)| (a - b).abs() < 1e-6));
            st = s2;
            caches.push(c);
        }
        assert_eq!(st, fin);
        let mut ds: Option<State> = None;
        let mut dxs = vec![0.0; dx.len()];
        for k in (0..t).rev() {
            let (dxk, dsk) = stp.rnn.backward(
                caches.pop().unwrap(),
                &dy[k * 5 * b..(k + 1) * 5 * b],
                ds.as_ref(),
            );
            dxs[k * w..(k + 1) * w].copy_from_slice(&dxk);
            ds = Some(dsk);
        }
        assert!(dxs.iter().zip(&dx).all(|(a, b)| (a - b).abs() < 1e-5));
        let ds = ds.unwrap();
        assert!(ds.h.iter().zip(&d0.h).all(|(a, b)| (a - b).abs() < 1e-5));
        let mut ga = Vec::new();
        seq.rnn.visit(&mut |p| ga.extend_from_slice(&p.g));
        let mut gb = Vec::new();
        stp.rnn.visit(&mut |p| gb.extend_from_slice(&p.g));
        assert!(
            ga.iter().zip(&gb).all(|(a, b)| (a - b).abs() < 1e-4),
            "{cell:?} weight gradients"
        );
    }
}
