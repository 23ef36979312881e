//! Stepping a unidirectional stack one timestep at a time, for a batch: what generation,
//! greedy and beam decoding and an attention decoder need, where the next input depends
//! on the last output so the sequence call cannot be used.
//!
//! `x [B, I]` goes in, the state `[L, B, H]` (as [`Rnn::zero_state`] makes it) is updated in
//! place, and the top layer's output `[B, H]` (after the residual connections and norms
//! between layers, as in [`Rnn::forward`]) comes out. Weights are packed once, when the
//! stepper is made (and again by [`Stepper::refresh`] after an optimizer step); buffers grow
//! to the largest batch seen and are reused, so a step allocates nothing.
//!
//! The packed copy follows the weights: an optimizer update bumps each parameter's
//! version, and the next step repacks what changed. Training through steps (teacher forcing
//! in a decoder) uses [`Stepper::step_train`], which keeps each step's trace, and
//! [`Stepper::backward_step`], called on the traces in reverse order.
//!
//! For cells whose hidden bias folds into the input side (RNN, LSTM), each layer's
//! `[W_ih | W_hh]` is packed into one `[G·H, I+H]` matrix with one bias, so a step is one
//! product per layer that reads every weight exactly once: a matrix-vector product at
//! B = 1, where decoding is bound by reading the weights, and a GEMM on the persistent
//! thread pool for larger batches. GRU (whose b_hn stays apart) and the layer-normalised
//! LSTM (which normalises the two projections separately) take two products.

use super::cell::{step_backward, step_forward, StepBwd, StepFwd};
use super::lnlstm;
use super::norm::NormCache;
use super::ops::{add_bias_rows, matmul, matvec, streamed, sum_rows_into, Streamed};
use super::rnn::{Norm, Rnn, State};
use crate::engine::ops::Mat;
use crate::error::{Error, Result};

/// `out [B, n] = x [B, k] · Wᵀ` for `w [n, k]`.
fn project(out: &mut [f32], w: &[f32], x: &[f32], b: usize, k: usize) {
    if b == 1 {
        matvec(out, w, x, false);
    } else {
        matmul(out, [b, w.len() / k, k], Mat::n(x), Mat::t(w), false);
    }
}

/// One layer's packed weights: `[G·H, I+H]` and the summed bias `[G·H]`, for folding cells.
///
/// Both copies of the weights are [`Streamed`]: a batch-1 step reads all of them, and on
/// 4 KiB pages those reads missed the TLB (huge pages: fp32 generation 1.28× on an Intel
/// Xeon, and the 7–10 % that bf16 generation lost or gained with where the allocator
/// happened to put the buffers, gone).
struct Packed {
    w: Streamed<f32>,
    bias: Vec<f32>,
    /// `w` in bf16 for batch-1 steps under `--precision bf16`.
    w_bf16: Option<Streamed<u16>>,
}

pub struct Stepper {
    packed: Vec<Option<Packed>>,
    /// The weight versions each layer was packed from (w_ih, w_hh, b_ih, b_hh).
    versions: Vec<[u64; 4]>,
    /// The current layer's input `[B, I]`.
    inp: Vec<f32>,
    /// h_{t−1} of the current layer `[B, H]`.
    hp: Vec<f32>,
    /// `[B, I+H]`: each row's input then its h_{t−1} (packed layers).
    xh: Vec<f32>,
    xg: Vec<f32>,
    hg: Vec<f32>,
    gates: Vec<f32>,
    hn: Vec<f32>,
    /// The current layer's output `[B, H]` (the next layer's input).
    out: Vec<f32>,
    tc: Vec<f32>,
    cn: Vec<f32>,
    scratch: Vec<f32>,
    active: Vec<bool>,
}

impl Stepper {
    /// Packs the weights of `rnn`, which must be unidirectional.
    pub fn new(rnn: &Rnn) -> Result<Stepper> {
        if rnn.cfg.bidirectional {
            return Err(Error::config(
                "a bidirectional stack cannot be stepped: its reverse direction needs the whole sequence",
            ));
        }
        let mut s = Stepper {
            packed: Vec::new(),
            versions: Vec::new(),
            inp: Vec::new(),
            hp: Vec::new(),
            xh: Vec::new(),
            xg: Vec::new(),
            hg: Vec::new(),
            gates: Vec::new(),
            hn: Vec::new(),
            out: Vec::new(),
            tc: Vec::new(),
            cn: Vec::new(),
            scratch: Vec::new(),
            active: Vec::new(),
        };
        s.refresh(rnn);
        Ok(s)
    }

    /// Packs the weights again. [`Stepper::step`] calls it when an optimizer update changed
    /// them; call it after changing weights by hand.
    pub fn refresh(&mut self, rnn: &Rnn) {
        self.versions = Self::versions_of(rnn);
        // Each layer's buffers are refilled in place when their sizes still fit.
        let mut prev = std::mem::take(&mut self.packed).into_iter();
        self.packed = rnn
            .dirs
            .iter()
            .map(|d| {
                let prev = prev.next().flatten();
                if !d.kind.folds_hidden_bias() || d.ln.is_some() {
                    return None;
                }
                let (i, h, g) = (d.input(), d.hidden, d.kind.gates() * d.hidden);
                let (pw, pb) = prev.map_or((None, None), |p| (Some(p.w), p.w_bf16));
                let w = streamed(pw, g * (i + h), |w| {
                    for (r, row) in w.chunks_exact_mut(i + h).enumerate() {
                        row[..i].copy_from_slice(&d.w_ih.w[r * i..(r + 1) * i]);
                        row[i..].copy_from_slice(&d.w_hh.w[r * h..(r + 1) * h]);
                    }
                });
                let bias = d.b_ih.w.iter().zip(&d.b_hh.w).map(|(a, b)| a + b).collect();
                let w_bf16 = super::bf16::weights_for_matvec(&w, pb);
                Some(Packed { w, bias, w_bf16 })
            })
            .collect();
    }

    fn versions_of(rnn: &Rnn) -> Vec<[u64; 4]> {
        rnn.dirs
            .iter()
            .map(|d| {
                [
                    d.w_ih.version,
                    d.w_hh.version,
                    d.b_ih.version,
                    d.b_hh.version,
                ]
            })
            .collect()
    }

    /// One timestep: `x [B, I]` in, `state` (`[L, B, H]`) updated, output `[B, H]`.
    pub fn step(&mut self, rnn: &Rnn, x: &[f32], b: usize, state: &mut State) -> &[f32] {
        let stale = rnn.dirs.len() != self.versions.len()
            || rnn.dirs.iter().zip(&self.versions).any(|(d, v)| {
                *v != [
                    d.w_ih.version,
                    d.w_hh.version,
                    d.b_ih.version,
                    d.b_hh.version,
                ]
            });
        if stale {
            self.refresh(rnn);
        }
        let hs = rnn.cfg.hidden;
        let kind = rnn.cfg.cell;
        let g = kind.gates() * hs;
        self.xg.resize(b * g, 0.0);
        self.hg.resize(b * g, 0.0);
        self.gates.resize(b * g, 0.0);
        self.hn.resize(b * hs, 0.0);
        self.tc.resize(b * hs, 0.0);
        self.active.clear();
        self.active.resize(b, true);
        self.out.clear();
        self.out.extend_from_slice(x);
        for (l, dir) in rnn.dirs.iter().enumerate() {
            let i = dir.input();
            let rows = l * b * hs..(l + 1) * b * hs;
            std::mem::swap(&mut self.inp, &mut self.out);
            self.hp.clear();
            self.hp.extend_from_slice(&state.h[rows.clone()]);
            if let Some(p) = &self.packed[l] {
                let k = i + hs;
                self.xh.resize(b * k, 0.0);
                for r in 0..b {
                    self.xh[r * k..r * k + i].copy_from_slice(&self.inp[r * i..(r + 1) * i]);
                    self.xh[r * k + i..(r + 1) * k].copy_from_slice(&self.hp[r * hs..(r + 1) * hs]);
                }
                match &p.w_bf16 {
                    Some(wb) if b == 1 => {
                        super::bf16::matvec(&mut self.xg, wb, &self.xh, super::ops::threads())
                    }
                    _ => project(&mut self.xg, &p.w, &self.xh, b, k),
                }
                add_bias_rows(&mut self.xg, &p.bias);
                self.hg.fill(0.0);
            } else {
                project(&mut self.xg, &dir.w_ih.w, &self.inp, b, i);
                project(&mut self.hg, &dir.w_hh.w, &self.hp, b, hs);
                if dir.ln.is_none() {
                    add_bias_rows(&mut self.xg, &dir.b_ih.w);
                    add_bias_rows(&mut self.hg, &dir.b_hh.w);
                }
            }
            let c: &mut [f32] = if kind.has_cell_state() {
                &mut state.c[rows.clone()]
            } else {
                &mut []
            };
            self.out.clear();
            self.out.resize(b * hs, 0.0);
            if let Some(ln) = &dir.ln {
                // Ba et al.: normalise the two projections, then add both biases.
                ln.ih.forward_eval(&mut self.xg, &mut self.scratch);
                ln.hh.forward_eval(&mut self.hg, &mut self.scratch);
                for r in 0..b {
                    for kk in 0..g {
                        self.gates[r * g + kk] = self.xg[r * g + kk]
                            + self.hg[r * g + kk]
                            + dir.b_ih.w[kk]
                            + dir.b_hh.w[kk];
                    }
                }
                self.out.copy_from_slice(&self.hp);
                lnlstm::step_eval(
                    &ln.c,
                    &mut self.gates,
                    c,
                    &mut self.out,
                    &mut self.tc,
                    (&mut self.cn, &mut self.scratch),
                    &self.active,
                );
            } else {
                step_forward(
                    kind,
                    hs,
                    StepFwd {
                        xg: &self.xg,
                        hg: &self.hg,
                        h_prev: &self.hp,
                        h: &mut self.out,
                        c,
                        gates: &mut self.gates,
                        hn: &mut self.hn,
                        active: &self.active,
                    },
                );
            }
            state.h[rows].copy_from_slice(&self.out);
            if rnn.residual_at(l) {
                self.out
                    .iter_mut()
                    .zip(&self.inp)
                    .for_each(|(o, x)| *o += x);
            }
            match rnn.norms.get(l) {
                Some(Norm::Layer(n)) => n.forward_eval(&mut self.out, &mut self.scratch),
                Some(Norm::Batch(n)) => n.forward_eval(&mut self.out),
                None => {}
            }
        }
        &self.out
    }
}

/// What [`Stepper::backward_step`] needs from one layer of one training step.
struct LayerTrace {
    /// The layer's input `[B, I]`, h_{t−1}, c_{t−1} and c_t `[B, H]`.
    x: Vec<f32>,
    h_prev: Vec<f32>,
    c_prev: Vec<f32>,
    c: Vec<f32>,
    gates: Vec<f32>,
    hn: Vec<f32>,
    norm: Option<NormCache>,
}

/// One training step's trace, for [`Stepper::backward_step`].
pub struct StepTrace {
    b: usize,
    layers: Vec<LayerTrace>,
}

impl Stepper {
    /// One training timestep: as [`Stepper::step`] (same results), keeping what the
    /// backward step needs. No dropout is applied between layers (a decoder applies its
    /// own around the stack). The layer-normalised LSTM and BatchNorm between layers are
    /// stepped only for inference; training them goes through [`Rnn::forward`].
    pub fn step_train(
        &mut self,
        rnn: &Rnn,
        x: &[f32],
        b: usize,
        state: &mut State,
    ) -> crate::error::Result<(Vec<f32>, StepTrace)> {
        if rnn.cfg.cell_norm || matches!(rnn.norms.first(), Some(Norm::Batch(_))) {
            return Err(Error::config(
                "training step by step covers plain cells and LayerNorm between layers; train a layer-normalised LSTM or BatchNorm with whole sequences",
            ));
        }
        let (hs, kind) = (rnn.cfg.hidden, rnn.cfg.cell);
        let g = kind.gates() * hs;
        let lstm = kind.has_cell_state();
        let active = vec![true; b];
        let mut cur = x.to_vec();
        let mut layers = Vec::with_capacity(rnn.dirs.len());
        for (l, dir) in rnn.dirs.iter().enumerate() {
            let i = dir.input();
            let rows = l * b * hs..(l + 1) * b * hs;
            let h_prev = state.h[rows.clone()].to_vec();
            let c_prev = if lstm {
                state.c[rows.clone()].to_vec()
            } else {
                Vec::new()
            };
            let mut xg = vec![0.0; b * g];
            let mut hg = vec![0.0; b * g];
            project(&mut xg, &dir.w_ih.w, &cur, b, i);
            add_bias_rows(&mut xg, &dir.b_ih.w);
            project(&mut hg, &dir.w_hh.w, &h_prev, b, hs);
            if kind.folds_hidden_bias() {
                add_bias_rows(&mut xg, &dir.b_hh.w);
                xg.iter_mut().zip(&hg).for_each(|(a, h)| *a += h);
                hg.fill(0.0);
            } else {
                add_bias_rows(&mut hg, &dir.b_hh.w);
            }
            let mut gates = vec![0.0; b * g];
            let mut hn = vec![
                0.0;
                if kind == crate::engine::cell::CellKind::Gru {
                    b * hs
                } else {
                    0
                }
            ];
            let mut h = vec![0.0; b * hs];
            let mut c = c_prev.clone();
            step_forward(
                kind,
                hs,
                StepFwd {
                    xg: &xg,
                    hg: &hg,
                    h_prev: &h_prev,
                    h: &mut h,
                    c: &mut c,
                    gates: &mut gates,
                    hn: &mut hn,
                    active: &active,
                },
            );
            state.h[rows.clone()].copy_from_slice(&h);
            if lstm {
                state.c[rows].copy_from_slice(&c);
            }
            let mut out = h;
            if rnn.residual_at(l) {
                out.iter_mut().zip(&cur).for_each(|(o, x)| *o += x);
            }
            let norm = match rnn.norms.get(l) {
                Some(Norm::Layer(n)) => Some(n.forward(&mut out)),
                _ => None,
            };
            layers.push(LayerTrace {
                x: std::mem::replace(&mut cur, out),
                h_prev,
                c_prev,
                c,
                gates,
                hn,
                norm,
            });
        }
        Ok((cur, StepTrace { b, layers }))
    }

    /// Backward of one training step (call on the traces in reverse order): `dy [B, H]` is
    /// dL/d(output) and `dstate` holds dL/d(state after the step) on entry and dL/d(state
    /// before it) on return. Accumulates every parameter gradient; returns dL/dx `[B, I]`.
    pub fn backward_step(
        &mut self,
        rnn: &mut Rnn,
        trace: StepTrace,
        dy: &[f32],
        dstate: &mut State,
    ) -> Vec<f32> {
        let (hs, kind, b) = (rnn.cfg.hidden, rnn.cfg.cell, trace.b);
        let g = kind.gates() * hs;
        let lstm = kind.has_cell_state();
        let gru = kind == crate::engine::cell::CellKind::Gru;
        let active = vec![true; b];
        let mut dcur = dy.to_vec();
        for (l, t) in trace.layers.into_iter().enumerate().rev() {
            let residual = rnn.residual_at(l);
            if let (Some(Norm::Layer(n)), Some(c)) = (rnn.norms.get_mut(l), &t.norm) {
                n.backward(c, &mut dcur);
            }
            let rows = l * b * hs..(l + 1) * b * hs;
            let mut dh: Vec<f32> = dcur
                .iter()
                .zip(&dstate.h[rows.clone()])
                .map(|(a, s)| a + s)
                .collect();
            let mut dc = if lstm {
                dstate.c[rows.clone()].to_vec()
            } else {
                Vec::new()
            };
            let mut dxg = vec![0.0; b * g];
            let mut dhg = vec![0.0; if gru { b * g } else { 0 }];
            step_backward(
                kind,
                hs,
                StepBwd {
                    gates: &t.gates,
                    hn: &t.hn,
                    h_prev: &t.h_prev,
                    c_prev: &t.c_prev,
                    c: &t.c,
                    dh: &mut dh,
                    dc: &mut dc,
                    dxg: &mut dxg,
                    dhg: &mut dhg,
                    active: &active,
                },
            );
            let dir = &mut rnn.dirs[l];
            let i = dir.input();
            let dh_side = if gru { &dhg } else { &dxg };
            matmul(&mut dir.w_ih.g, [g, i, b], Mat::t(&dxg), Mat::n(&t.x), true);
            sum_rows_into(&mut dir.b_ih.g, &dxg);
            matmul(
                &mut dir.w_hh.g,
                [g, hs, b],
                Mat::t(dh_side),
                Mat::n(&t.h_prev),
                true,
            );
            sum_rows_into(&mut dir.b_hh.g, dh_side);
            // dh now holds the part of dL/dh_{t−1} that bypasses W_hh.
            matmul(
                &mut dh,
                [b, hs, g],
                Mat::n(dh_side),
                Mat::n(&dir.w_hh.w),
                true,
            );
            let mut dx = vec![0.0; b * i];
            matmul(&mut dx, [b, i, g], Mat::n(&dxg), Mat::n(&dir.w_ih.w), false);
            if residual {
                dx.iter_mut().zip(&dcur).for_each(|(d, r)| *d += r);
            }
            dstate.h[rows.clone()].copy_from_slice(&dh);
            if lstm {
                dstate.c[rows].copy_from_slice(&dc);
            }
            dcur = dx;
        }
        dcur
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cell::CellKind;
    use crate::engine::init::Init;
    use crate::engine::norm::NormKind;
    use crate::engine::rnn::{Pass, RnnConfig};
    use rand::{Rng, SeedableRng};

    /// Stepping T times equals one sequence call, for B > 1, every cell, residual
    /// connections, both norms between layers and the layer-normalised LSTM.
    #[test]
    fn stepping_equals_the_sequence_call() {
        let (t, b, i) = (5, 3, 6);
        for (cell, norm, residual, cell_norm) in [
            (CellKind::Rnn, NormKind::None, false, false),
            (CellKind::RnnRelu, NormKind::Layer, true, false),
            (CellKind::Lstm, NormKind::None, true, false),
            (CellKind::Gru, NormKind::Layer, true, false),
            (CellKind::Lstm, NormKind::Batch, false, true),
            (CellKind::Gru, NormKind::None, false, false),
        ] {
            for batch in [1, b] {
                let mut cfg = RnnConfig::new(cell, i, 8, 2);
                (cfg.norm, cfg.residual, cfg.cell_norm) = (norm, residual, cell_norm);
                let mut rng = rand::rngs::StdRng::seed_from_u64(9);
                let mut rnn = Rnn::new("rnn", cfg, Init::Pytorch, 0.0, &mut rng);
                let x: Vec<f32> = (0..t * batch * i)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect();
                let mut init = rnn.zero_state(batch);
                init.h
                    .iter_mut()
                    .for_each(|v| *v = rng.random_range(-0.5..0.5));
                init.c
                    .iter_mut()
                    .for_each(|v| *v = rng.random_range(-0.5..0.5));
                let (want, want_state, _) =
                    rnn.forward(&x, Pass::eval(t, batch).state(&init), &mut rng);
                let mut st = init.clone();
                let mut s = Stepper::new(&rnn).unwrap();
                for tau in 0..t {
                    let y = s.step(
                        &rnn,
                        &x[tau * batch * i..(tau + 1) * batch * i],
                        batch,
                        &mut st,
                    );
                    let w = &want[tau * batch * 8..(tau + 1) * batch * 8];
                    for (a, e) in y.iter().zip(w) {
                        assert!(
                            (a - e).abs() < 1e-5,
                            "{cell:?} {norm:?} B={batch} t={tau}: {a} vs {e}"
                        );
                    }
                }
                for (a, e) in
                    st.h.iter()
                        .chain(&st.c)
                        .zip(want_state.h.iter().chain(&want_state.c))
                {
                    assert!((a - e).abs() < 1e-5, "{cell:?} final state: {a} vs {e}");
                }
            }
        }
        let mut bi = RnnConfig::new(CellKind::Lstm, 4, 4, 1);
        bi.bidirectional = true;
        let rnn = Rnn::new(
            "rnn",
            bi,
            Init::Pytorch,
            0.0,
            &mut rand::rngs::StdRng::seed_from_u64(1),
        );
        assert!(Stepper::new(&rnn).is_err());
    }

    /// Teacher forcing through steps: T training steps, then their backward steps in
    /// reverse, give the outputs, the final state, every parameter gradient, dx and the
    /// initial state's gradient of one sequence call and its backward.
    #[test]
    fn training_steps_equal_the_sequence_call_and_its_backward() {
        use crate::engine::param::{Module, Param};
        let (t, b, i) = (4, 3, 5);
        for (cell, norm, residual) in [
            (CellKind::Lstm, NormKind::None, false),
            (CellKind::Gru, NormKind::Layer, true),
            (CellKind::Rnn, NormKind::Layer, false),
            (CellKind::Gru, NormKind::None, false),
        ] {
            let mut cfg = RnnConfig::new(cell, i, 5, 2);
            (cfg.norm, cfg.residual) = (norm, residual);
            let mut rng = rand::rngs::StdRng::seed_from_u64(11);
            let mut seq = Rnn::new("rnn", cfg, Init::Pytorch, 0.0, &mut rng);
            let mut stp = seq.clone();
            let rand_vec = |n: usize, rng: &mut rand::rngs::StdRng| -> Vec<f32> {
                (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
            };
            let x = rand_vec(t * b * i, &mut rng);
            let dy = rand_vec(t * b * 5, &mut rng);
            let mut init = seq.zero_state(b);
            init.h = rand_vec(init.h.len(), &mut rng);
            init.c = rand_vec(init.c.len(), &mut rng);
            let (y, fin, cache) = seq.forward(&x, Pass::train(t, b).state(&init), &mut rng);
            let (dx, dinit) = seq.backward(cache, &dy, None);
            let mut st = init.clone();
            let mut s = Stepper::new(&stp).unwrap();
            let mut traces = Vec::new();
            for tau in 0..t {
                let (out, tr) = s
                    .step_train(&stp, &x[tau * b * i..(tau + 1) * b * i], b, &mut st)
                    .unwrap();
                for (a, e) in out.iter().zip(&y[tau * b * 5..(tau + 1) * b * 5]) {
                    assert!((a - e).abs() < 1e-5, "{cell:?} output");
                }
                traces.push(tr);
            }
            assert!(st.h.iter().zip(&fin.h).all(|(a, e)| (a - e).abs() < 1e-5));
            let mut ds = stp.zero_state(b);
            let mut dxs = vec![0.0; t * b * i];
            for (tau, tr) in traces.into_iter().enumerate().rev() {
                let d = s.backward_step(&mut stp, tr, &dy[tau * b * 5..(tau + 1) * b * 5], &mut ds);
                dxs[tau * b * i..(tau + 1) * b * i].copy_from_slice(&d);
            }
            let close = |a: &[f32], e: &[f32], what: &str| {
                let scale = e.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                for (p, q) in a.iter().zip(e) {
                    assert!((p - q).abs() <= 1e-4 * scale, "{cell:?} {what}: {p} vs {q}");
                }
            };
            close(&dxs, &dx, "dx");
            close(&ds.h, &dinit.h, "dh0");
            close(&ds.c, &dinit.c, "dc0");
            let mut ga = Vec::new();
            seq.visit(&mut |p: &Param| ga.push((p.name.clone(), p.g.clone())));
            let mut k = 0;
            stp.visit(&mut |p: &Param| {
                close(&p.g, &ga[k].1, &ga[k].0);
                k += 1;
            });
        }
    }

    /// An optimizer update bumps the weights' versions; the next step repacks them.
    #[test]
    fn updated_weights_are_repacked() {
        use crate::engine::optim::{OptimKind, Optimizer};
        use crate::engine::param::Module;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut rnn = Rnn::new(
            "rnn",
            RnnConfig::new(CellKind::Lstm, 4, 6, 2),
            Init::Pytorch,
            0.0,
            &mut rng,
        );
        let mut s = Stepper::new(&rnn).unwrap();
        let x = [0.5f32, -0.3, 0.8, 0.1];
        let mut st = rnn.zero_state(1);
        let before = s.step(&rnn, &x, 1, &mut st).to_vec();
        rnn.visit_mut(&mut |p| p.g.iter_mut().for_each(|g| *g = 1.0));
        Optimizer::new(OptimKind::Sgd { momentum: 0.0 }, 0.1).step(&mut rnn, 0.0);
        let mut st = rnn.zero_state(1);
        let after = s.step(&rnn, &x, 1, &mut st).to_vec();
        let mut fresh = Stepper::new(&rnn).unwrap();
        let mut st = rnn.zero_state(1);
        assert_eq!(after, fresh.step(&rnn, &x, 1, &mut st).to_vec());
        assert_ne!(before, after);
    }
}
