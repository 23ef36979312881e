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
//! For cells whose hidden bias folds into the input side (RNN, LSTM), each layer's
//! `[W_ih | W_hh]` is packed into one `[G·H, I+H]` matrix with one bias, so a step is one
//! product per layer that reads every weight exactly once: a matrix-vector product at
//! B = 1, where decoding is bound by reading the weights, and a GEMM on the persistent
//! thread pool for larger batches. GRU (whose b_hn stays apart) and the layer-normalised
//! LSTM (which normalises the two projections separately) take two products.

use super::cell::{step_forward, StepFwd};
use super::lnlstm;
use super::ops::{add_bias_rows, matmul, matvec};
use super::rnn::{Norm, Rnn, State};
use crate::error::{Error, Result};

/// `out [B, n] = x [B, k] · Wᵀ` for `w [n, k]`.
fn project(out: &mut [f32], w: &[f32], x: &[f32], b: usize, k: usize) {
    if b == 1 {
        matvec(out, w, x, false);
    } else {
        matmul(b, w.len() / k, k, out, x, false, w, true, false);
    }
}

/// One layer's packed weights: `[G·H, I+H]` and the summed bias `[G·H]`, for folding cells.
struct Packed {
    w: Vec<f32>,
    bias: Vec<f32>,
}

pub struct Stepper {
    packed: Vec<Option<Packed>>,
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

    /// Packs the weights again: call after the weights change (an optimizer step).
    pub fn refresh(&mut self, rnn: &Rnn) {
        self.packed = rnn
            .dirs
            .iter()
            .map(|d| {
                if !d.kind.folds_hidden_bias() || d.ln.is_some() {
                    return None;
                }
                let (i, h, g) = (d.input(), d.hidden, d.kind.gates() * d.hidden);
                let mut w = Vec::with_capacity(g * (i + h));
                for r in 0..g {
                    w.extend_from_slice(&d.w_ih.w[r * i..(r + 1) * i]);
                    w.extend_from_slice(&d.w_hh.w[r * h..(r + 1) * h]);
                }
                let bias = d.b_ih.w.iter().zip(&d.b_hh.w).map(|(a, b)| a + b).collect();
                Some(Packed { w, bias })
            })
            .collect();
    }

    /// One timestep: `x [B, I]` in, `state` (`[L, B, H]`) updated, output `[B, H]`.
    pub fn step(&mut self, rnn: &Rnn, x: &[f32], b: usize, state: &mut State) -> &[f32] {
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
                project(&mut self.xg, &p.w, &self.xh, b, k);
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
                    &mut self.cn,
                    &mut self.scratch,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cell::CellKind;
    use crate::engine::init::Init;
    use crate::engine::norm::NormKind;
    use crate::engine::rnn::RnnConfig;
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
                    rnn.forward(&x, t, batch, None, Some(&init), false, false, &mut rng);
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
}
