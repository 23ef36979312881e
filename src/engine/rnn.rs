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
use super::lnlstm::{CellNorm, LnCache};
use super::norm::{BatchNorm, LayerNorm, NormCache, NormKind};
use super::ops::{add_bias_rows, matmul, sum_rows_into, threads, Panels};
use super::param::{Module, Param};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// Layer normalisation inside the cell (LSTM only; see [`super::lnlstm`]).
    pub ln: Option<CellNorm>,
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

/// What one direction's forward keeps for backward, in processing order s (s = τ for the
/// forward direction, s = T−1−τ for the reverse one), so that every per-step slot is
/// contiguous and the weight-gradient GEMMs read them as one matrix.
#[derive(Clone, Debug, Default)]
pub struct DirCache {
    pub(crate) t: usize,
    pub(crate) b: usize,
    /// Threads of the forward time loop: `gates` are in that [`Split`]'s column order.
    parts: usize,
    /// Input `[T, B, I]`, in processing order (LN-LSTM: time order).
    pub(crate) x: Vec<f32>,
    /// States `[T+1, B, H]`: slot s is the state before step s, slot T the final one.
    pub(crate) hs: Vec<f32>,
    /// LSTM cell states `[T+1, B, H]`, same convention.
    pub(crate) cs: Vec<f32>,
    /// Post-activation gates `[T, B, G·H]` (columns in the split's order); GRU's W_hn h + b_hn `[T, B, H]`.
    pub(crate) gates: Vec<f32>,
    hn: Vec<f32>,
    /// `[T, B]` by real time τ: is step τ a real token of sequence b.
    pub(crate) active: Vec<bool>,
    /// LN-LSTM only: the normalisations' caches.
    pub(crate) ln: Option<Box<LnCache>>,
}

impl DirCache {
    pub(crate) fn new(t: usize, b: usize, active: &[bool]) -> DirCache {
        DirCache {
            t,
            b,
            active: active.to_vec(),
            ..Default::default()
        }
    }
}

/// A buffer shared by the threads of one time loop, each of which writes only the
/// hidden units it owns. Segments handed out never overlap between threads.
#[derive(Clone, Copy)]
struct Shared(*mut f32, usize);
// SAFETY: threads write disjoint segments and synchronise through `SpinBarrier`.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn new(v: &mut [f32]) -> Shared {
        Shared(v.as_mut_ptr(), v.len())
    }
    /// SAFETY: callers guarantee no other thread accesses `[off, off+len)` concurrently.
    #[allow(clippy::mut_from_ref)]
    unsafe fn seg(&self, off: usize, len: usize) -> &mut [f32] {
        assert!(off + len <= self.1);
        std::slice::from_raw_parts_mut(self.0.add(off), len)
    }
    /// SAFETY: no thread writes `[off, off+len)` while the slice lives.
    unsafe fn read(&self, off: usize, len: usize) -> &[f32] {
        assert!(off + len <= self.1);
        std::slice::from_raw_parts(self.0.add(off), len)
    }
}

/// A barrier that spins: the time loop meets once per step, every few microseconds,
/// far more often than an OS wait/wake round trip would allow.
struct SpinBarrier {
    n: usize,
    count: AtomicUsize,
    gen: AtomicUsize,
}

impl SpinBarrier {
    fn new(n: usize) -> SpinBarrier {
        SpinBarrier {
            n,
            count: AtomicUsize::new(0),
            gen: AtomicUsize::new(0),
        }
    }
    fn wait(&self) {
        if self.n == 1 {
            return;
        }
        let g = self.gen.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.count.store(0, Ordering::Relaxed);
            self.gen.fetch_add(1, Ordering::Release);
        } else {
            let mut spins = 0u32;
            while self.gen.load(Ordering::Acquire) == g {
                std::hint::spin_loop();
                spins += 1;
                // Yield soon: when the machine is oversubscribed the partner thread may be
                // descheduled, and spinning would only delay it further.
                if spins > 1 << 12 {
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// Runs `f(part, parts)` on `parts` threads (the caller is part 0).
fn run_parts(parts: usize, f: impl Fn(usize) + Sync) {
    if parts == 1 {
        return f(0);
    }
    std::thread::scope(|s| {
        for p in 1..parts {
            let f = &f;
            s.spawn(move || f(p));
        }
        f(0);
    });
}

/// Threads for the time loop of a layer with `b` rows and `h` units: each thread owns a
/// slice of hidden units (all of their gates), so one barrier per step suffices.
fn loop_threads(b: usize, h: usize, g: usize) -> usize {
    let t = threads();
    if t > 1 && h >= 32 && b * h * g >= 8192 {
        t.min(h / 16)
    } else {
        1
    }
}

fn unit_range(h: usize, parts: usize, p: usize) -> (usize, usize) {
    // Multiples of 8 keep each thread's slices aligned to SIMD width.
    let chunk = h.div_ceil(parts).div_ceil(8) * 8;
    let j0 = (p * chunk).min(h);
    (j0, ((p + 1) * chunk).min(h) - j0)
}

/// How a time loop shares hidden units among threads, and the order of the `G·H` gate
/// columns that goes with it. Thread p owns units `j0..j0+u` of every gate; in the
/// "part-major" order its `G·u` columns sit together at column `G·j0` (gate k, unit jj at
/// `G·j0 + k·u + jj`), so each thread reads the input projections and writes the gate
/// cache in place, row by row, instead of gathering and scattering its columns at every
/// step. With one thread the order is PyTorch's gate-major one and nothing is permuted.
struct Split {
    parts: usize,
    hidden: usize,
    gates: usize,
    /// The gate-major index of each part-major column `[G·H]` (computed once per call:
    /// every permutation below and the backward's W_hh columns use it).
    order: Vec<usize>,
}

impl Split {
    fn new(parts: usize, hidden: usize, gates: usize) -> Split {
        let mut order = Vec::with_capacity(gates * hidden);
        for p in 0..parts.max(1) {
            let (j0, u) = unit_range(hidden, parts.max(1), p);
            for k in 0..gates {
                order.extend((0..u).map(|jj| k * hidden + j0 + jj));
            }
        }
        Split {
            parts,
            hidden,
            gates,
            order,
        }
    }

    fn range(&self, p: usize) -> (usize, usize) {
        unit_range(self.hidden, self.parts, p)
    }

    fn is_identity(&self) -> bool {
        self.parts <= 1
    }

    /// The rows of gate-major `w [G·H, n]` in part-major order.
    fn permute_rows<'a>(&self, w: &'a [f32], n: usize) -> std::borrow::Cow<'a, [f32]> {
        if self.is_identity() {
            return w.into();
        }
        let mut out = Vec::with_capacity(w.len());
        for &r in &self.order {
            out.extend_from_slice(&w[r * n..(r + 1) * n]);
        }
        out.into()
    }

    /// Adds to gate-major `grad [G·H, n]` what `f` computes in part-major order: `f(buf)`
    /// accumulates into `buf`, which is `grad` itself when the orders agree.
    fn accumulate_rows(&self, grad: &mut [f32], n: usize, f: impl FnOnce(&mut [f32])) {
        if self.is_identity() {
            return f(grad);
        }
        let mut tmp = vec![0.0; grad.len()];
        f(&mut tmp);
        for (q, &r) in self.order.iter().enumerate() {
            grad[r * n..(r + 1) * n]
                .iter_mut()
                .zip(&tmp[q * n..(q + 1) * n])
                .for_each(|(d, v)| *d += v);
        }
    }
}

impl RnnDir {
    pub fn new(
        prefix: &str,
        suffix: &str,
        kind: CellKind,
        input: usize,
        hidden: usize,
        reverse: bool,
    ) -> RnnDir {
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
            ln: None,
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
                b.w[h..2 * h]
                    .iter_mut()
                    .for_each(|v| *v += forget_bias / 2.0);
            }
        }
    }

    /// W_hh restricted to units `j0..j0+u` of every gate, transposed to `[H, G·u]`
    /// (and b_hh to `[G·u]`), so one thread's recurrent product has a row-major right
    /// operand: for the skinny [B, H] left operand this layout runs about three times
    /// faster in `gemm` than the transposed view of W_hh.
    fn pack_units(&self, j0: usize, u: usize) -> (Panels, Vec<f32>) {
        let (h, gates) = (self.hidden, self.kind.gates());
        let gu = gates * u;
        let mut w = vec![0.0; h * gu];
        let mut b = Vec::with_capacity(gu);
        for k in 0..gates {
            for jj in 0..u {
                let row = &self.w_hh.w[(k * h + j0 + jj) * h..(k * h + j0 + jj + 1) * h];
                for (kin, &v) in row.iter().enumerate() {
                    w[kin * gu + k * u + jj] = v;
                }
            }
            b.extend_from_slice(&self.b_hh.w[k * h + j0..k * h + j0 + u]);
        }
        (Panels::new(&w, h, gu), b)
    }

    /// Columns `j0..j0+u` of W_hh as a contiguous `[G·H, u]` block, rows in the split's
    /// order, for backward's dh_{t−1} = dG · W_hh restricted to a thread's units (dG comes
    /// in that order too).
    fn pack_cols(&self, split: &Split, j0: usize, u: usize) -> Panels {
        let h = self.hidden;
        let cols: Vec<f32> = split
            .order
            .iter()
            .flat_map(|&r| self.w_hh.w[r * h + j0..r * h + j0 + u].iter().copied())
            .collect();
        Panels::new(&cols, split.gates * h, u)
    }

    /// x `[T, B, I]` → y `[T, B, H]` written with row stride `y_stride` at column
    /// `y_off` (so two directions can fill one concatenated output). `h`, `c` `[B, H]`
    /// (c empty unless LSTM) hold the initial state and receive the final one.
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
        if self.ln.is_some() {
            return self.forward_ln(x, t, b, active, h, c, y, y_stride, y_off);
        }
        let (hs, gates, i) = (self.hidden, self.kind.gates(), self.input());
        let g = gates * hs;
        let lstm = self.kind.has_cell_state();
        let gru = self.kind == CellKind::Gru;
        let bh = b * hs;
        let order = |s: usize| if self.reverse { t - 1 - s } else { s };
        let split = Split::new(loop_threads(b, hs, gates), hs, gates);
        // The input projections of all timesteps in one GEMM, in the split's column order:
        // the recurrence cannot be batched over time, this part can.
        let mut xg = vec![0.0; t * b * g];
        let w_ih = split.permute_rows(&self.w_ih.w, i);
        matmul(t * b, g, i, &mut xg, x, false, &w_ih, true, false);
        add_bias_rows(&mut xg, &split.permute_rows(&self.b_ih.w, 1));
        if self.kind.folds_hidden_bias() {
            add_bias_rows(&mut xg, &split.permute_rows(&self.b_hh.w, 1));
        }
        let slots = if keep { t + 1 } else { 2 };
        let mut cache = DirCache {
            t,
            b,
            parts: split.parts,
            x: Vec::new(),
            hs: vec![0.0; slots * bh],
            cs: if lstm && keep {
                vec![0.0; (t + 1) * bh]
            } else {
                Vec::new()
            },
            gates: if keep {
                vec![0.0; t * b * g]
            } else {
                Vec::new()
            },
            hn: if gru && keep {
                vec![0.0; t * bh]
            } else {
                Vec::new()
            },
            active: active.to_vec(),
            ln: None,
        };
        if keep {
            cache.x = if self.reverse {
                (0..t)
                    .flat_map(|s| x[order(s) * b * i..(order(s) + 1) * b * i].iter().copied())
                    .collect()
            } else {
                x.to_vec()
            };
        }
        cache.hs[..bh].copy_from_slice(h);
        if lstm && keep {
            cache.cs[..bh].copy_from_slice(c);
        }
        let slot = |s: usize| if keep { s } else { s % 2 };
        let barrier = SpinBarrier::new(split.parts);
        let (sh_hs, sh_cs, sh_g, sh_hn) = (
            Shared::new(&mut cache.hs),
            Shared::new(&mut cache.cs),
            Shared::new(&mut cache.gates),
            Shared::new(&mut cache.hn),
        );
        let (sh_y, sh_h, sh_c) = (Shared::new(y), Shared::new(h), Shared::new(c));
        let xg = &xg;
        run_parts(split.parts, |p| {
            let (j0, u) = split.range(p);
            if u == 0 {
                for _ in 0..t {
                    barrier.wait();
                }
                return;
            }
            let (w, bias) = self.pack_units(j0, u);
            let (gu, c0) = (gates * u, gates * j0);
            let mut hg = vec![0.0; b * gu];
            // This thread's units of c, carried through the loop `[B, u]`.
            let mut cl = Vec::new();
            if lstm {
                // SAFETY: c is only read here, before any thread writes it (at the end).
                let c_in = unsafe { sh_c.read(0, bh) };
                for bi in 0..b {
                    cl.extend_from_slice(&c_in[bi * hs + j0..][..u]);
                }
            }
            // Scratch rows for what is not kept (inference).
            let mut g_row = vec![0.0; if keep { 0 } else { gu }];
            let mut hn_row = vec![0.0; if gru && !keep { u } else { 0 }];
            for s in 0..t {
                let tau = order(s);
                // SAFETY: slot(s) was completed by all threads before the last barrier and
                // nobody writes it during this step.
                let h_prev = unsafe { sh_hs.read(slot(s) * bh, bh) };
                w.left_mul(b, &mut hg, gu, h_prev, hs, false);
                if gru {
                    add_bias_rows(&mut hg, &bias);
                }
                let act = &active[tau * b..(tau + 1) * b];
                for bi in 0..b {
                    let (hr, gr) = (bi * hs + j0, (s * b + bi) * g + c0);
                    // SAFETY: every segment below holds units j0..j0+u (or their gate
                    // columns) of one row, owned by this thread.
                    unsafe {
                        let h_out = sh_hs.seg(slot(s + 1) * bh + hr, u);
                        let gates_out = if keep {
                            sh_g.seg(gr, gu)
                        } else {
                            &mut g_row[..]
                        };
                        let hn_out = match (gru, keep) {
                            (true, true) => sh_hn.seg(s * bh + hr, u),
                            (true, false) => &mut hn_row[..],
                            _ => &mut [][..],
                        };
                        let c_row = if lstm {
                            &mut cl[bi * u..(bi + 1) * u]
                        } else {
                            &mut [][..]
                        };
                        let xr = (tau * b + bi) * g + c0;
                        step_forward(
                            self.kind,
                            u,
                            StepFwd {
                                xg: &xg[xr..xr + gu],
                                hg: &hg[bi * gu..(bi + 1) * gu],
                                h_prev: &h_prev[hr..hr + u],
                                h: h_out,
                                c: c_row,
                                gates: gates_out,
                                hn: hn_out,
                                active: &act[bi..bi + 1],
                            },
                        );
                        if lstm && keep {
                            sh_cs
                                .seg((s + 1) * bh + hr, u)
                                .copy_from_slice(&cl[bi * u..(bi + 1) * u]);
                        }
                        let y_row = sh_y.seg((tau * b + bi) * y_stride + y_off + j0, u);
                        if act[bi] {
                            y_row.copy_from_slice(sh_hs.read(slot(s + 1) * bh + hr, u));
                        } else {
                            y_row.fill(0.0);
                        }
                    }
                }
                barrier.wait();
            }
            // SAFETY: own units of the final state; slot(t) is complete after the last barrier.
            unsafe {
                let h_last = sh_hs.read(slot(t) * bh, bh);
                for bi in 0..b {
                    sh_h.seg(bi * hs + j0, u)
                        .copy_from_slice(&h_last[bi * hs + j0..][..u]);
                    if lstm {
                        sh_c.seg(bi * hs + j0, u)
                            .copy_from_slice(&cl[bi * u..(bi + 1) * u]);
                    }
                }
            }
        });
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
        if let Some(mut ln) = self.ln.take() {
            self.backward_ln(
                &mut ln,
                cache,
                dy,
                dy_stride,
                dy_off,
                dh,
                dc,
                dx,
                dx_accumulate,
            );
            self.ln = Some(ln);
            return;
        }
        let (t, b) = (cache.t, cache.b);
        let (hs, gates, i) = (self.hidden, self.kind.gates(), self.input());
        let g = gates * hs;
        let bh = b * hs;
        let gru = self.kind == CellKind::Gru;
        let lstm = self.kind.has_cell_state();
        let order = |s: usize| if self.reverse { t - 1 - s } else { s };
        // The forward's split: the cached gates are in its column order.
        let split = Split::new(cache.parts, hs, gates);
        // Gate gradients `[T, B, G·H]` in the split's column order.
        let mut dxg = vec![0.0; t * b * g];
        let mut dhg = if gru {
            vec![0.0; t * b * g]
        } else {
            Vec::new()
        };
        let barrier = SpinBarrier::new(split.parts);
        let (sh_dxg, sh_dhg, sh_dh, sh_dc) = (
            Shared::new(&mut dxg),
            Shared::new(&mut dhg),
            Shared::new(dh),
            Shared::new(dc),
        );
        run_parts(split.parts, |p| {
            let (j0, u) = split.range(p);
            if u == 0 {
                for _ in 0..t {
                    barrier.wait();
                }
                return;
            }
            let w_cols = self.pack_cols(&split, j0, u);
            let (gu, c0) = (gates * u, gates * j0);
            // This thread's units of dh and dc `[B, u]`.
            let (mut dhl, mut dcl) = (Vec::with_capacity(b * u), Vec::new());
            // SAFETY: dh and dc are read here and written only at the end, own units each.
            unsafe {
                let (dh_in, dc_in) = (sh_dh.read(0, bh), sh_dc.read(0, if lstm { bh } else { 0 }));
                for bi in 0..b {
                    dhl.extend_from_slice(&dh_in[bi * hs + j0..][..u]);
                    if lstm {
                        dcl.extend_from_slice(&dc_in[bi * hs + j0..][..u]);
                    }
                }
            }
            // Units j0..j0+u of row bi of slot s of a `[·, B, H]` cache (empty if unused).
            fn unit(v: &[f32], off: usize, u: usize) -> &[f32] {
                if v.is_empty() {
                    &[]
                } else {
                    &v[off..off + u]
                }
            }
            let at = |s: usize, bi: usize| s * bh + bi * hs + j0;
            for s in (0..t).rev() {
                let tau = order(s);
                let act = &cache.active[tau * b..(tau + 1) * b];
                for bi in 0..b {
                    if act[bi] {
                        let row = &dy[(tau * b + bi) * dy_stride + dy_off + j0..][..u];
                        dhl[bi * u..(bi + 1) * u]
                            .iter_mut()
                            .zip(row)
                            .for_each(|(d, v)| *d += v);
                    }
                    let gr = (s * b + bi) * g + c0;
                    // SAFETY: gate columns of this thread's units in row bi of step s.
                    unsafe {
                        step_backward(
                            self.kind,
                            u,
                            StepBwd {
                                gates: &cache.gates[gr..gr + gu],
                                hn: unit(&cache.hn, at(s, bi), u),
                                h_prev: unit(&cache.hs, at(s, bi), u),
                                c_prev: unit(&cache.cs, at(s, bi), u),
                                c: unit(&cache.cs, at(s + 1, bi), u),
                                dh: &mut dhl[bi * u..(bi + 1) * u],
                                dc: if lstm {
                                    &mut dcl[bi * u..(bi + 1) * u]
                                } else {
                                    &mut []
                                },
                                dxg: sh_dxg.seg(gr, gu),
                                dhg: if gru { sh_dhg.seg(gr, gu) } else { &mut [] },
                                active: &act[bi..bi + 1],
                            },
                        );
                    }
                }
                barrier.wait();
                // dh_{t−1}[:, own units] += dG_h [B, G·H] · W_hh[:, own units]
                // SAFETY: step s's slots are complete (barrier) and no longer written.
                let dgh = unsafe {
                    if gru {
                        sh_dhg.read(s * b * g, b * g)
                    } else {
                        sh_dxg.read(s * b * g, b * g)
                    }
                };
                w_cols.left_mul(b, &mut dhl, u, dgh, g, true);
            }
            // SAFETY: own units.
            unsafe {
                for bi in 0..b {
                    sh_dh
                        .seg(bi * hs + j0, u)
                        .copy_from_slice(&dhl[bi * u..(bi + 1) * u]);
                    if lstm {
                        sh_dc
                            .seg(bi * hs + j0, u)
                            .copy_from_slice(&dcl[bi * u..(bi + 1) * u]);
                    }
                }
            }
        });
        let dgh_all = if gru { &dhg } else { &dxg };
        // Weight gradients as whole-sequence GEMMs: [G·H, T·B] × [T·B, ·].
        split.accumulate_rows(&mut self.w_ih.g, i, |gw| {
            matmul(g, i, t * b, gw, &dxg, true, &cache.x, false, true)
        });
        split.accumulate_rows(&mut self.w_hh.g, hs, |gw| {
            matmul(
                g,
                hs,
                t * b,
                gw,
                dgh_all,
                true,
                &cache.hs[..t * bh],
                false,
                true,
            )
        });
        split.accumulate_rows(&mut self.b_ih.g, 1, |gb| sum_rows_into(gb, &dxg));
        split.accumulate_rows(&mut self.b_hh.g, 1, |gb| sum_rows_into(gb, dgh_all));
        let w_ih = split.permute_rows(&self.w_ih.w, i);
        if self.reverse {
            let mut tmp = vec![0.0; t * b * i];
            matmul(t * b, i, g, &mut tmp, &dxg, false, &w_ih, false, false);
            for s in 0..t {
                let (src, dst) = (
                    &tmp[s * b * i..(s + 1) * b * i],
                    &mut dx[order(s) * b * i..(order(s) + 1) * b * i],
                );
                if dx_accumulate {
                    dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
                } else {
                    dst.copy_from_slice(src);
                }
            }
        } else {
            matmul(t * b, i, g, dx, &dxg, false, &w_ih, false, dx_accumulate);
        }
    }
}

impl Module for RnnDir {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        f(&self.w_ih);
        f(&self.w_hh);
        f(&self.b_ih);
        f(&self.b_hh);
        if let Some(ln) = &self.ln {
            ln.visit(f);
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.w_ih);
        f(&mut self.w_hh);
        f(&mut self.b_ih);
        f(&mut self.b_hh);
        if let Some(ln) = &mut self.ln {
            ln.visit_mut(f);
        }
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
    /// Layer normalisation inside each LSTM cell (Ba et al. 2016; [`super::lnlstm`]).
    #[serde(default)]
    pub cell_norm: bool,
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
            cell_norm: false,
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

    /// Refuses combinations the layers do not implement.
    pub fn validate(&self) -> Result<(), String> {
        if self.cell_norm && self.cell != CellKind::Lstm {
            return Err(format!(
                "layer normalisation inside the cell (Ba et al. 2016) is implemented for lstm, not {}",
                format!("{:?}", self.cell).to_lowercase()
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
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
    pub fn new(
        prefix: &str,
        cfg: RnnConfig,
        scheme: Init,
        forget_bias: f32,
        rng: &mut dyn RngCore,
    ) -> Rnn {
        let mut dirs = Vec::new();
        let mut norms = Vec::new();
        for l in 0..cfg.layers {
            let input = if l == 0 { cfg.input } else { cfg.output() };
            for d in 0..cfg.dirs() {
                let suffix = format!("_l{l}{}", if d == 1 { "_reverse" } else { "" });
                let mut dir = RnnDir::new(prefix, &suffix, cfg.cell, input, cfg.hidden, d == 1);
                dir.init(scheme, forget_bias, rng);
                if cfg.cell_norm {
                    assert!(cfg.validate().is_ok(), "cell_norm needs an LSTM");
                    dir.ln = Some(CellNorm::new(prefix, &suffix, cfg.hidden));
                }
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
        State {
            h: vec![0.0; n],
            c: if self.cfg.cell.has_cell_state() {
                vec![0.0; n]
            } else {
                Vec::new()
            },
        }
    }

    pub fn residual_at(&self, l: usize) -> bool {
        let input = if l == 0 {
            self.cfg.input
        } else {
            self.cfg.output()
        };
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
            let residual = self.residual_at(l);
            // Only a residual layer needs its input as it was before dropout.
            let input = if residual { cur.clone() } else { Vec::new() };
            let mut xin = cur;
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
                let c = if lstm {
                    &mut st.c[sl.clone()]
                } else {
                    &mut cdummy[..]
                };
                let dc = self.dirs[k].forward(
                    &xin,
                    t,
                    b,
                    &active,
                    &mut st.h[sl],
                    c,
                    &mut y,
                    out,
                    d * hs,
                    keep,
                );
                dcs.push(dc);
            }
            if residual {
                for (v, r) in y.iter_mut().zip(&input) {
                    *v += r;
                }
            }
            let norm = match self.norms.get_mut(l) {
                Some(Norm::Layer(n)) => Some(n.forward(&mut y)),
                Some(Norm::Batch(n)) => {
                    let valid = if lengths.is_some() {
                        active.clone()
                    } else {
                        Vec::new()
                    };
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
        let cache = RnnCache {
            t,
            b,
            active,
            layers: if keep { caches } else { Vec::new() },
        };
        (cur, st, cache)
    }

    /// dy `[T, B, D·H]` and dL/d(final state) (`None`: zero) → (dx `[T, B, I]`,
    /// dL/d(initial state)). Accumulates every parameter gradient.
    pub fn backward(
        &mut self,
        cache: RnnCache,
        dy: &[f32],
        dstate: Option<&State>,
    ) -> (Vec<f32>, State) {
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
                let dc = if lstm {
                    &mut ds.c[sl.clone()]
                } else {
                    &mut cdummy[..]
                };
                self.dirs[k].backward(
                    &lc.dirs[d],
                    &dcur,
                    out,
                    d * hs,
                    &mut ds.h[sl],
                    dc,
                    &mut dx,
                    d > 0,
                );
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
