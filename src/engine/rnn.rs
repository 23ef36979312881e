//! Recurrent sequence layers over any [`CellKind`]: one direction ([`RnnDir`]) and the
//! stacked, optionally bidirectional, residual and normalised network ([`Rnn`]).
//!
//! Layout is time-major as in PyTorch: inputs `[T, B, I]`, outputs `[T, B, D·H]`,
//! states `[L·D, B, H]`. The work is organised the way cuDNN does it: one GEMM projects
//! the inputs of all timesteps, one small GEMM per step applies W_hh, the gate math is one
//! fused pass ([`super::cell`]), and backward accumulates the weight gradients as two
//! whole-sequence GEMMs after the time loop.
//!
//! Variable lengths follow pack_padded_sequence: at a step past a sequence's length its
//! state is not touched and its output is zero, so the final state is the state after the
//! last real token; a reverse direction starts each sequence at its own last token.

use super::cell::{step_backward, step_forward, CellKind, StepBwd, StepFwd};
use super::dropout::{self, DropoutKind, Mask};
use super::init::{self, Init};
use super::norm::{BatchNorm, LayerNorm, NormCache, NormKind};
use super::ops::{add_bias_rows, matmul, sum_rows_into};
use super::param::{Module, Param};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// One direction of one layer. Weights `[G·H, I]`, `[G·H, H]`, biases `[G·H]`.
#[derive(Clone, Debug)]
pub struct RnnDir {
    pub kind: CellKind,
    pub hidden: usize,
    pub reverse: bool,
    pub w_ih: Param,
    pub w_hh: Param,
    pub b_ih: Param,
    pub b_hh: Param,
}

/// What one direction's forward keeps for backward. Everything is indexed by real time τ,
/// not processing order, so the weight-gradient GEMMs line up with the input.
#[derive(Clone, Debug, Default)]
pub struct DirCache {
    t: usize,
    b: usize,
    /// Input `[T, B, I]`.
    x: Vec<f32>,
    /// State before step τ: h `[T, B, H]`, c `[T, B, H]` (LSTM).
    hp: Vec<f32>,
    cp: Vec<f32>,
    /// c after step τ `[T, B, H]` (LSTM).
    c: Vec<f32>,
    /// Post-activation gates `[T, B, G·H]`; GRU's W_hn h + b_hn `[T, B, H]`.
    gates: Vec<f32>,
    hn: Vec<f32>,
    /// `[T, B]`: is step τ a real token of sequence b.
    active: Vec<bool>,
}

/// Recurrent state of one or more layers: h and (LSTM) c, each `[n, B, H]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub h: Vec<f32>,
    pub c: Vec<f32>,
}

/// `[T, B]` activity mask from per-sequence lengths (`None`: all T steps are real).
pub fn active_mask(t: usize, b: usize, lengths: Option<&[usize]>) -> Vec<bool> {
    let mut m = vec![true; t * b];
    if let Some(len) = lengths {
        for tau in 0..t {
            for (bi, &l) in len.iter().enumerate() {
                m[tau * b + bi] = tau < l;
            }
        }
    }
    m
}

impl RnnDir {
    pub fn new(prefix: &str, suffix: &str, kind: CellKind, input: usize, hidden: usize, reverse: bool) -> RnnDir {
        let g = kind.gates() * hidden;
        let p = |n: &str, s: &[usize]| Param::zeros(format!("{prefix}.{n}{suffix}"), s);
        RnnDir {
            kind,
            hidden,
            reverse,
            w_ih: p("weight_ih", &[g, input]),
            w_hh: p("weight_hh", &[g, hidden]),
            b_ih: p("bias_ih", &[g]),
            b_hh: p("bias_hh", &[g]),
        }
    }

    pub fn input(&self) -> usize {
        self.w_ih.shape[1]
    }

    pub fn init(&mut self, scheme: Init, forget_bias: f32, rng: &mut dyn RngCore) {
        let gates = self.kind.gates();
        match scheme {
            Init::Pytorch => {
                let a = 1.0 / (self.hidden as f32).sqrt();
                self.visit_mut(&mut |p| init::uniform(p, a, rng));
            }
            Init::Uniform { a } => self.visit_mut(&mut |p| init::uniform(p, a, rng)),
            Init::Xavier | Init::Orthogonal => {
                init::xavier_blocks(&mut self.w_ih, gates, rng);
                if scheme == Init::Orthogonal {
                    init::orthogonal_blocks(&mut self.w_hh, gates, rng);
                } else {
                    init::xavier_blocks(&mut self.w_hh, gates, rng);
                }
                self.b_ih.w.fill(0.0);
                self.b_hh.w.fill(0.0);
            }
        }
        if self.kind == CellKind::Lstm && forget_bias != 0.0 {
            // Split evenly over the two bias vectors so their sum gains `forget_bias`.
            let h = self.hidden;
            for b in [&mut self.b_ih, &mut self.b_hh] {
                b.w[h..2 * h].iter_mut().for_each(|v| *v += forget_bias / 2.0);
            }
        }
    }

    /// x `[T, B, I]` → y `[T, B, H]` written with row stride `y_stride` at column
    /// `y_off` (so two directions can fill one concatenated output). `h0`, `c0` `[B, H]`
    /// (empty: zeros) are replaced by the final state.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        t: usize,
        b: usize,
        active: &[bool],
        h: &mut [f32],
        c: &mut [f32],
        y: &mut [f32],
        y_stride: usize,
        y_off: usize,
        keep: bool,
    ) -> DirCache {
        let (hs, g, i) = (self.hidden, self.kind.gates() * self.hidden, self.input());
        let lstm = self.kind.has_cell_state();
        let gru = self.kind == CellKind::Gru;
        // All timesteps' input projections in one GEMM: the recurrence cannot be batched
        // over time, this part can.
        let mut xg = vec![0.0; t * b * g];
        matmul(t * b, g, i, &mut xg, x, false, &self.w_ih.w, true, false);
        add_bias_rows(&mut xg, &self.b_ih.w);
        if self.kind.folds_hidden_bias() {
            add_bias_rows(&mut xg, &self.b_hh.w);
        }
        let tbh = if keep { t * b * hs } else { 0 };
        let mut cache = DirCache {
            t,
            b,
            x: if keep { x.to_vec() } else { Vec::new() },
            hp: vec![0.0; tbh],
            cp: if lstm { vec![0.0; tbh] } else { Vec::new() },
            c: if lstm { vec![0.0; tbh] } else { Vec::new() },
            gates: vec![0.0; if keep { t * b * g } else { b * g }],
            hn: if gru { vec![0.0; if keep { t * b * hs } else { b * hs }] } else { Vec::new() },
            active: active.to_vec(),
        };
        let mut hg = vec![0.0; b * g];
        for s in 0..t {
            let tau = if self.reverse { t - 1 - s } else { s };
            let (bh, bg) = (tau * b * hs, tau * b * g);
            if keep {
                cache.hp[bh..bh + b * hs].copy_from_slice(h);
                if lstm {
                    cache.cp[bh..bh + b * hs].copy_from_slice(c);
                }
            }
            matmul(b, g, hs, &mut hg, h, false, &self.w_hh.w, true, false);
            if gru {
                add_bias_rows(&mut hg, &self.b_hh.w);
            }
            let (go, ho) = if keep { (bg, bh) } else { (0, 0) };
            let act = &active[tau * b..(tau + 1) * b];
            step_forward(
                self.kind,
                hs,
                StepFwd {
                    xg: &xg[bg..bg + b * g],
                    hg: &hg,
                    h,
                    c,
                    gates: &mut cache.gates[go..go + b * g],
                    hn: if gru { &mut cache.hn[ho..ho + b * hs] } else { &mut [] },
                    active: act,
                },
            );
            if keep && lstm {
                cache.c[bh..bh + b * hs].copy_from_slice(c);
            }
            for (bi, &a) in act.iter().enumerate() {
                let row = &mut y[(tau * b + bi) * y_stride + y_off..][..hs];
                if a {
                    row.copy_from_slice(&h[bi * hs..(bi + 1) * hs]);
                } else {
                    row.fill(0.0);
                }
            }
        }
        cache
    }

    /// dy `[T, B, ·]` read with stride/offset as in forward; `dh`, `dc` `[B, H]` hold
    /// dL/d(final state) on entry and dL/d(initial state) on return. Accumulates the weight
    /// gradients and writes (or adds, when `dx_accumulate`) dx `[T, B, I]`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &mut self,
        cache: &DirCache,
        dy: &[f32],
        dy_stride: usize,
        dy_off: usize,
        dh: &mut [f32],
        dc: &mut [f32],
        dx: &mut [f32],
        dx_accumulate: bool,
    ) {
        let (t, b) = (cache.t, cache.b);
        let (hs, g, i) = (self.hidden, self.kind.gates() * self.hidden, self.input());
        let gru = self.kind == CellKind::Gru;
        let mut dxg = vec![0.0; t * b * g];
        let mut dhg = if gru { vec![0.0; t * b * g] } else { Vec::new() };
        let mut dh_new = vec![0.0; b * hs];
        for s in (0..t).rev() {
            let tau = if self.reverse { t - 1 - s } else { s };
            let (bh, bg) = (tau * b * hs, tau * b * g);
            let act = &cache.active[tau * b..(tau + 1) * b];
            for (bi, &a) in act.iter().enumerate() {
                if a {
                    let row = &dy[(tau * b + bi) * dy_stride + dy_off..][..hs];
                    for (d, v) in dh[bi * hs..(bi + 1) * hs].iter_mut().zip(row) {
                        *d += v;
                    }
                }
            }
            let lstm = self.kind.has_cell_state();
            step_backward(
                self.kind,
                hs,
                StepBwd {
                    gates: &cache.gates[bg..bg + b * g],
                    hn: if gru { &cache.hn[bh..bh + b * hs] } else { &[] },
                    h_prev: &cache.hp[bh..bh + b * hs],
                    c_prev: if lstm { &cache.cp[bh..bh + b * hs] } else { &[] },
                    c: if lstm { &cache.c[bh..bh + b * hs] } else { &[] },
                    dh,
                    dc,
                    dxg: &mut dxg[bg..bg + b * g],
                    dhg: if gru { &mut dhg[bg..bg + b * g] } else { &mut [] },
                    active: act,
                },
            );
            let dgh = if gru { &dhg[bg..bg + b * g] } else { &dxg[bg..bg + b * g] };
            matmul(b, hs, g, &mut dh_new, dgh, false, &self.w_hh.w, false, false);
            for (d, v) in dh.iter_mut().zip(&dh_new) {
                *d += v;
            }
        }
        let dgh_all = if gru { &dhg } else { &dxg };
        // Weight gradients as whole-sequence GEMMs: [G·H, T·B] × [T·B, ·].
        matmul(g, i, t * b, &mut self.w_ih.g, &dxg, true, &cache.x, false, true);
        matmul(g, hs, t * b, &mut self.w_hh.g, dgh_all, true, &cache.hp, false, true);
        sum_rows_into(&mut self.b_ih.g, &dxg);
        sum_rows_into(&mut self.b_hh.g, dgh_all);
        matmul(t * b, i, g, dx, &dxg, false, &self.w_ih.w, false, dx_accumulate);
    }
}

impl Module for RnnDir {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        f(&self.w_ih);
        f(&self.w_hh);
        f(&self.b_ih);
        f(&self.b_hh);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.w_ih);
        f(&mut self.w_hh);
        f(&mut self.b_ih);
        f(&mut self.b_hh);
    }
}

/// A stack of recurrent layers as torch.nn.LSTM / GRU / RNN, plus rnnkit's options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RnnConfig {
    pub cell: CellKind,
    pub input: usize,
    pub hidden: usize,
    pub layers: usize,
    pub bidirectional: bool,
    /// Dropout on the input of every layer but the first (PyTorch's `dropout`).
    pub dropout: f32,
    pub dropout_kind: DropoutKind,
    /// y_l = f_l(x_l) + x_l between layers of equal width.
    pub residual: bool,
    /// Normalisation of each layer's output.
    pub norm: NormKind,
}

impl RnnConfig {
    pub fn new(cell: CellKind, input: usize, hidden: usize, layers: usize) -> RnnConfig {
        RnnConfig {
            cell,
            input,
            hidden,
            layers,
            bidirectional: false,
            dropout: 0.0,
            dropout_kind: DropoutKind::Standard,
            residual: false,
            norm: NormKind::None,
        }
    }

    pub fn dirs(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    pub fn output(&self) -> usize {
        self.hidden * self.dirs()
    }
}

#[derive(Clone, Debug)]
pub enum Norm {
    Layer(LayerNorm),
    Batch(BatchNorm),
}

#[derive(Clone, Debug)]
pub struct Rnn {
    pub cfg: RnnConfig,
    /// `layers · dirs`, layer-major (l0, l0_reverse, l1, ...), PyTorch's order.
    pub dirs: Vec<RnnDir>,
    pub norms: Vec<Norm>,
}

struct LayerCache {
    mask: Option<Mask>,
    dirs: Vec<DirCache>,
    norm: Option<NormCache>,
    residual: bool,
}

/// Everything [`Rnn::backward`] needs from one [`Rnn::forward`] call.
pub struct RnnCache {
    t: usize,
    b: usize,
    active: Vec<bool>,
    layers: Vec<LayerCache>,
}

impl Rnn {
    /// Parameter names are `{prefix}.weight_ih_l{k}[_reverse]` etc. as in PyTorch.
    pub fn new(prefix: &str, cfg: RnnConfig, scheme: Init, forget_bias: f32, rng: &mut dyn RngCore) -> Rnn {
        let mut dirs = Vec::new();
        let mut norms = Vec::new();
        for l in 0..cfg.layers {
            let input = if l == 0 { cfg.input } else { cfg.output() };
            for d in 0..cfg.dirs() {
                let suffix = format!("_l{l}{}", if d == 1 { "_reverse" } else { "" });
                let mut dir = RnnDir::new(prefix, &suffix, cfg.cell, input, cfg.hidden, d == 1);
                dir.init(scheme, forget_bias, rng);
                dirs.push(dir);
            }
            let np = format!("{prefix}_norm.{l}");
            match cfg.norm {
                NormKind::None => {}
                NormKind::Layer => norms.push(Norm::Layer(LayerNorm::new(&np, cfg.output()))),
                NormKind::Batch => norms.push(Norm::Batch(BatchNorm::new(&np, cfg.output()))),
            }
        }
        Rnn { cfg, dirs, norms }
    }

    /// A zero state for batch `b`: h, c `[L·D, B, H]`.
    pub fn zero_state(&self, b: usize) -> State {
        let n = self.cfg.layers * self.cfg.dirs() * b * self.cfg.hidden;
        State { h: vec![0.0; n], c: if self.cfg.cell.has_cell_state() { vec![0.0; n] } else { Vec::new() } }
    }

    fn residual_at(&self, l: usize) -> bool {
        let input = if l == 0 { self.cfg.input } else { self.cfg.output() };
        self.cfg.residual && l > 0 && input == self.cfg.output()
    }

    /// x `[T, B, I]` → (y `[T, B, D·H]`, final state, cache). `state` is the initial state
    /// (`None`: zeros). With `keep = false` nothing is cached (evaluation, decoding).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        x: &[f32],
        t: usize,
        b: usize,
        lengths: Option<&[usize]>,
        state: Option<&State>,
        train: bool,
        keep: bool,
        rng: &mut dyn RngCore,
    ) -> (Vec<f32>, State, RnnCache) {
        let cfg = self.cfg.clone();
        let (hs, nd, out) = (cfg.hidden, cfg.dirs(), cfg.output());
        let active = active_mask(t, b, lengths);
        let mut st = state.cloned().unwrap_or_else(|| self.zero_state(b));
        let lstm = cfg.cell.has_cell_state();
        let mut cur = x.to_vec();
        let mut caches = Vec::new();
        for l in 0..cfg.layers {
            let input = cur;
            let mut xin = input.clone();
            let bf = b * (xin.len() / (t * b).max(1));
            let mask = if l > 0 {
                dropout::forward(&mut xin, bf, cfg.dropout, cfg.dropout_kind, train, rng)
            } else {
                None
            };
            let mut y = vec![0.0; t * b * out];
            let mut dcs = Vec::new();
            for d in 0..nd {
                let k = l * nd + d;
                let sl = k * b * hs..(k + 1) * b * hs;
                let mut cdummy = Vec::new();
                let c = if lstm { &mut st.c[sl.clone()] } else { &mut cdummy[..] };
                let dc = self.dirs[k].forward(&xin, t, b, &active, &mut st.h[sl], c, &mut y, out, d * hs, keep);
                dcs.push(dc);
            }
            let residual = self.residual_at(l);
            if residual {
                for (v, r) in y.iter_mut().zip(&input) {
                    *v += r;
                }
            }
            let norm = match self.norms.get_mut(l) {
                Some(Norm::Layer(n)) => Some(n.forward(&mut y)),
                Some(Norm::Batch(n)) => {
                    let valid = if lengths.is_some() { active.clone() } else { Vec::new() };
                    Some(n.forward(&mut y, &valid, train))
                }
                None => None,
            };
            if lengths.is_some() {
                for (row, &a) in y.chunks_exact_mut(out).zip(&active) {
                    if !a {
                        row.fill(0.0);
                    }
                }
            }
            caches.push(LayerCache {
                mask,
                dirs: dcs,
                norm,
                residual,
            });
            cur = y;
        }
        let cache = RnnCache { t, b, active, layers: if keep { caches } else { Vec::new() } };
        (cur, st, cache)
    }

    /// dy `[T, B, D·H]` and dL/d(final state) (`None`: zero) → (dx `[T, B, I]`,
    /// dL/d(initial state)). Accumulates every parameter gradient.
    pub fn backward(&mut self, cache: RnnCache, dy: &[f32], dstate: Option<&State>) -> (Vec<f32>, State) {
        let cfg = self.cfg.clone();
        let (t, b) = (cache.t, cache.b);
        let (hs, nd, out) = (cfg.hidden, cfg.dirs(), cfg.output());
        let lstm = cfg.cell.has_cell_state();
        let mut ds = dstate.cloned().unwrap_or_else(|| self.zero_state(b));
        let mut dcur = dy.to_vec();
        for (l, lc) in cache.layers.into_iter().enumerate().rev() {
            for (row, &a) in dcur.chunks_exact_mut(out).zip(&cache.active) {
                if !a {
                    row.fill(0.0);
                }
            }
            match (self.norms.get_mut(l), &lc.norm) {
                (Some(Norm::Layer(n)), Some(c)) => n.backward(c, &mut dcur),
                (Some(Norm::Batch(n)), Some(c)) => n.backward(c, &mut dcur),
                _ => {}
            }
            let input_w = if l == 0 { cfg.input } else { out };
            let mut dx = vec![0.0; t * b * input_w];
            for d in 0..nd {
                let k = l * nd + d;
                let sl = k * b * hs..(k + 1) * b * hs;
                let mut cdummy = Vec::new();
                let dc = if lstm { &mut ds.c[sl.clone()] } else { &mut cdummy[..] };
                self.dirs[k].backward(&lc.dirs[d], &dcur, out, d * hs, &mut ds.h[sl], dc, &mut dx, d > 0);
            }
            dropout::backward(&mut dx, lc.mask.as_ref());
            if lc.residual {
                for (v, r) in dx.iter_mut().zip(&dcur) {
                    *v += r;
                }
            }
            dcur = dx;
        }
        (dcur, ds)
    }
}

impl Module for Rnn {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        for d in &self.dirs {
            d.visit(f);
        }
        for n in &self.norms {
            match n {
                Norm::Layer(n) => n.visit(f),
                Norm::Batch(n) => n.visit(f),
            }
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        for d in &mut self.dirs {
            d.visit_mut(f);
        }
        for n in &mut self.norms {
            match n {
                Norm::Layer(n) => n.visit_mut(f),
                Norm::Batch(n) => n.visit_mut(f),
            }
        }
    }
}
