//! Looking inside a recurrent stack: every layer's and direction's hidden state, the LSTM
//! cell state, and the gate activations, per token, for one sequence (what Karpathy's
//! visualised cells and LSTMVis show).
//!
//! [`Rnn::trace`] runs the stack's own forward pass, keeping what a training step keeps
//! for backward, and reads the states and gates from there: the hidden states it reports
//! are the forward's, bit for bit, not a recomputation.

use super::cell::CellKind;
use super::encoder::Encoder;
use super::par::Split;
use super::rnn::{Pass, Rnn, RnnCache};
use serde::Serialize;

/// One direction of one layer over a sequence of T tokens, in time order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DirTrace {
    pub layer: usize,
    /// The direction that reads the sequence from its end (bidirectional stacks).
    pub reverse: bool,
    /// h_t after token t `[T, H]`.
    pub h: Vec<f32>,
    /// The LSTM cell state c_t `[T, H]` (empty for other cells).
    pub c: Vec<f32>,
    /// Gate activations `[T, G, H]` in PyTorch's order, after their nonlinearity: LSTM
    /// input, forget, cell candidate, output (G = 4); GRU reset, update, candidate
    /// (G = 3); empty for the Elman RNN, whose only activation is h itself.
    pub gates: Vec<f32>,
}

/// A stack's trace over one sequence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StackTrace {
    /// Tokens.
    pub t: usize,
    /// Units a direction.
    pub hidden: usize,
    pub cell: CellKind,
    /// One per layer and direction, layer by layer (forward direction first).
    pub dirs: Vec<DirTrace>,
    /// The stack's output `[T, D·H]` (after residual connections and norms), what the
    /// task's head reads.
    pub output: Vec<f32>,
}

/// The names of a cell's gates, in the order of [`DirTrace::gates`].
pub fn gate_names(cell: CellKind) -> &'static [&'static str] {
    match cell {
        CellKind::Lstm => &["input", "forget", "cell", "output"],
        CellKind::Gru => &["reset", "update", "candidate"],
        CellKind::Rnn | CellKind::RnnRelu => &[],
    }
}

impl Rnn {
    /// x `[T, I]` (one sequence) → its [`StackTrace`], at inference (no dropout, batch
    /// norm in evaluation mode).
    pub fn trace(&mut self, x: &[f32], t: usize) -> StackTrace {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let (output, _, cache) = self.forward(x, Pass::eval(t, 1).keep(true), &mut rng);
        self.trace_cache(&cache, output)
    }

    /// The [`StackTrace`] of a forward pass over one sequence that kept its cache
    /// (`keep = true`, batch 1), with the stack's `output` `[T, D·H]`.
    pub(crate) fn trace_cache(&self, cache: &RnnCache, output: Vec<f32>) -> StackTrace {
        let t = cache.t();
        let (h, cell) = (self.cfg.hidden, self.cfg.cell);
        let g = cell.gates();
        let mut dirs = Vec::new();
        for (l, layer) in cache.layer_dirs().enumerate() {
            for (k, dc) in layer.iter().enumerate() {
                let reverse = k == 1;
                // Processing step s is token τ = s forward, T−1−s reverse; state slot
                // s + 1 holds the state after step s.
                let tau = |s: usize| if reverse { t - 1 - s } else { s };
                let mut d = DirTrace {
                    layer: l,
                    reverse,
                    h: vec![0.0; t * h],
                    c: vec![0.0; if dc.cs.is_empty() { 0 } else { t * h }],
                    gates: vec![0.0; if g > 1 { t * g * h } else { 0 }],
                };
                let split = Split::new(dc.parts(), h, g);
                for s in 0..t {
                    let at = tau(s);
                    let next = (s + 1) * h..(s + 2) * h;
                    d.h[at * h..(at + 1) * h].copy_from_slice(&dc.hs[next.clone()]);
                    if !d.c.is_empty() {
                        d.c[at * h..(at + 1) * h].copy_from_slice(&dc.cs[next]);
                    }
                    if g > 1 {
                        // The cache's columns are in the forward split's order.
                        let row = &dc.gates[s * g * h..(s + 1) * g * h];
                        let out = &mut d.gates[at * g * h..(at + 1) * g * h];
                        for (q, &r) in split.order.iter().enumerate() {
                            out[r] = row[q];
                        }
                    }
                }
                dirs.push(d);
            }
        }
        StackTrace {
            t,
            hidden: h,
            cell,
            dirs,
            output,
        }
    }
}

impl Encoder {
    /// Token ids `[T]` of one sequence → the stack's [`StackTrace`] over their embeddings.
    pub fn trace(&mut self, ids: &[u32]) -> StackTrace {
        let mut x = vec![0.0; ids.len() * self.embedding.dim()];
        self.embedding.forward(ids, &mut x);
        self.rnn.trace(&x, ids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::init::Init;
    use crate::engine::rnn::RnnConfig;
    use rand::{Rng, SeedableRng};

    /// The trace's hidden states are the forward pass's output, bit for bit, for every
    /// cell, both directions, residual stacks and the layer-normalised LSTM; its gates
    /// reproduce the cell's equations.
    #[test]
    fn trace_states_equal_the_forward_pass_bit_for_bit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for cell in [
            CellKind::Rnn,
            CellKind::RnnRelu,
            CellKind::Lstm,
            CellKind::Gru,
        ] {
            for (bidir, cell_norm, threads) in
                [(false, false, 1), (true, false, 2), (true, true, 1)]
            {
                if cell_norm && cell != CellKind::Lstm {
                    continue;
                }
                crate::engine::ops::with_threads(threads, || {
                    let (i, h, t) = (5, 70, 9);
                    let mut cfg = RnnConfig::new(cell, i, h, 2);
                    (cfg.bidirectional, cfg.cell_norm) = (bidir, cell_norm);
                    let mut rnn = Rnn::new("rnn", cfg, Init::Pytorch, 0.0, &mut rng);
                    let x: Vec<f32> = (0..t * i).map(|_| rng.random_range(-1.0..1.0)).collect();
                    let (y, _, _) = rnn.forward(&x, Pass::eval(t, 1), &mut rng);
                    let tr = rnn.trace(&x, t);
                    assert_eq!(tr.output, y, "{cell:?} bidir {bidir}");
                    let nd = if bidir { 2 } else { 1 };
                    assert_eq!(tr.dirs.len(), 2 * nd);
                    // The last layer's directions are the output's halves.
                    for (d, dt) in tr.dirs[nd..].iter().enumerate() {
                        assert_eq!(dt.reverse, d == 1);
                        for tau in 0..t {
                            let row = &y[tau * nd * h + d * h..][..h];
                            assert_eq!(&dt.h[tau * h..(tau + 1) * h], row, "{cell:?} d{d} t{tau}");
                        }
                    }
                    if cell == CellKind::Lstm && !cell_norm {
                        // h = o ⊙ tanh(c), and c = f ⊙ c_prev + i ⊙ g.
                        let d = &tr.dirs[0];
                        for k in 0..t * h {
                            let g = &d.gates[(k / h) * 4 * h..][..4 * h];
                            let j = k % h;
                            let prev = if k < h { 0.0 } else { d.c[k - h] };
                            let c = g[h + j] * prev + g[j] * g[2 * h + j];
                            assert!((d.c[k] - c).abs() < 1e-5, "c {k}");
                            assert!(
                                (d.h[k] - g[3 * h + j] * d.c[k].tanh()).abs() < 1e-5,
                                "h {k}"
                            );
                        }
                    }
                    if cell == CellKind::Gru {
                        // h_t = (1 − z) n + z h_{t−1}, forward direction of layer 0.
                        let d = &tr.dirs[0];
                        for tau in 0..t {
                            for j in 0..h {
                                let g = &d.gates[tau * 3 * h..];
                                let prev = if tau == 0 {
                                    0.0
                                } else {
                                    d.h[(tau - 1) * h + j]
                                };
                                let (z, n) = (g[h + j], g[2 * h + j]);
                                let want = (1.0 - z) * n + z * prev;
                                assert!((d.h[tau * h + j] - want).abs() < 1e-5);
                            }
                        }
                    }
                });
            }
        }
    }
}
