//! One direction of one recurrent layer ([`RnnDir`]): the fused time loop over any
//! [`CellKind`], forward and backward, and the layer-normalised LSTM's loop
//! ([`super::lnlstm`] holds its cell).
//!
//! Layout is time-major as in PyTorch: inputs `[T, B, I]`, outputs `[T, B, H]` (written
//! into a wider `[T, B, D·H]` buffer at an offset), states `[B, H]`. The work is organised
//! the way cuDNN does it: one GEMM projects the inputs of all timesteps, one small GEMM per
//! step applies W_hh, the gate math is one fused pass ([`super::cell`]), and backward
//! accumulates the weight gradients as two whole-sequence GEMMs after the time loop.
//!
//! Variable lengths follow pack_padded_sequence: at a step past a sequence's length its
//! state is not touched and its output is zero, so the final state is the state after the
//! last real token; a reverse direction starts each sequence at its own last token.

use super::bf16::{self, Start};
use super::cell::{step_backward, step_forward, CellKind, StepBwd, StepFwd};
use super::init::{self, Init};
use super::lnlstm::{self, CellNorm, LnCache};
use super::ops::{add_bias_rows, matmul, matmul_from, sum_rows_into, Panels};
use super::panel32::{self, lstm_step, LstmPanels, LstmStep};
use super::par::{loop_threads, run_parts, Shared, SpinBarrier, Split};
use super::param::{Module, Param};
use rand::RngCore;

/// One thread's recurrent weights for the time loop: an LSTM's packed for the fused step
/// (fp32 on AVX-512), anything else for the product followed by the cell's step.
enum StepWeights {
    Lstm(LstmPanels),
    Product(Panels),
}

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

/// What a direction's time loop reads: the input sequence, projected by W_ih in one
/// product, or input projections made beforehand ([`super::rnn::TokenProjections`]).
#[derive(Clone, Copy)]
pub enum DirInput<'a> {
    /// x `[T, B, I]`.
    Seq(&'a [f32]),
    /// Rows `[n, G·H]` of W_ih·x + biases in gate-major order, and the row of each step and
    /// sequence `[T·B]`. Inference only (nothing is kept for backward).
    Rows { table: &'a [f32], rows: &'a [u32] },
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
    /// Threads of the forward time loop, which fix the gate cache's column order.
    pub(crate) fn parts(&self) -> usize {
        self.parts
    }

    pub(crate) fn new(t: usize, b: usize, active: &[bool]) -> DirCache {
        DirCache {
            t,
            b,
            active: active.to_vec(),
            ..Default::default()
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
    fn pack_units(&self, j0: usize, u: usize) -> (StepWeights, Vec<f32>) {
        let (h, gates) = (self.hidden, self.kind.gates());
        let gu = gates * u;
        let mut w = vec![0.0; h * gu];
        let mut b = Vec::with_capacity(gu);
        // Transposed through a 32×32 tile: read 32 rows of W_hh a 32-value piece each, write
        // 32 rows of w a 32-value piece each, so both sides run along memory and the
        // transposition itself stays in L1. Writing each value straight to its place (one
        // store per cache line 4·G·u bytes on) cost 1.3–4 ns a value, the tile 0.5–0.8
        // (2×200 to 2×650 LSTMs); on one thread the 2×200 model spent 1.4% of a step here.
        const BLK: usize = 32;
        let mut tile = [[0f32; BLK]; BLK];
        for k in 0..gates {
            for jb in (0..u).step_by(BLK) {
                let nj = BLK.min(u - jb);
                for kb in (0..h).step_by(BLK) {
                    let nk = BLK.min(h - kb);
                    for (jj, t) in tile.iter_mut().enumerate().take(nj) {
                        let r = (k * h + j0 + jb + jj) * h + kb;
                        t[..nk].copy_from_slice(&self.w_hh.w[r..r + nk]);
                    }
                    for kin in 0..nk {
                        let out = &mut w[(kb + kin) * gu + k * u + jb..][..nj];
                        for (jj, o) in out.iter_mut().enumerate() {
                            *o = tile[jj][kin];
                        }
                    }
                }
            }
            b.extend_from_slice(&self.b_hh.w[k * h + j0..k * h + j0 + u]);
        }
        let weights = if self.kind == CellKind::Lstm
            && panel32::available()
            && bf16::active_path() == bf16::Path::F32
        {
            StepWeights::Lstm(LstmPanels::new(&w, h, u))
        } else {
            StepWeights::Product(Panels::new(&w, h, gu))
        };
        (weights, b)
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

    /// The input projections W_ih·x + b_ih (+ b_hh where the cell folds it in) of `n` rows
    /// x `[n, I]` → `[n, G·H]`, columns in `split`'s order. One GEMM for every timestep:
    /// the recurrence cannot be batched over time, this part can. The product starts from
    /// the biases: one pass over the output instead of three.
    pub(crate) fn project(&self, x: &[f32], n: usize, split: &Split) -> Vec<f32> {
        let (g, i) = (self.kind.gates() * self.hidden, self.input());
        let mut bias = split.permute_rows(&self.b_ih.w, 1).into_owned();
        if self.kind.folds_hidden_bias() {
            let b_hh = split.permute_rows(&self.b_hh.w, 1);
            bias.iter_mut().zip(b_hh.iter()).for_each(|(a, v)| *a += v);
        }
        let mut xg = vec![0.0; n * g];
        let w_ih = split.permute_rows(&self.w_ih.w, i);
        matmul_from(n, g, i, &mut xg, x, false, &w_ih, true, Start::Rows(&bias));
        xg
    }

    /// Input (x `[T, B, I]` or looked-up rows, see [`DirInput`]) → y `[T, B, H]` written
    /// with row stride `y_stride` at column `y_off` (so two directions can fill one
    /// concatenated output). `h`, `c` `[B, H]` (c empty unless LSTM) hold the initial state
    /// and receive the final one.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        input: DirInput,
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
        let x = match input {
            DirInput::Seq(x) => x,
            DirInput::Rows { .. } => {
                assert!(
                    !keep && self.ln.is_none(),
                    "projected rows: inference, no cell norm"
                );
                &[]
            }
        };
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
        // The input projections of all timesteps `[T·B, G·H]`, in the split's column order;
        // with one thread, rows looked up in place (`lookup`: the table and each step's row).
        let (xg, lookup) = match input {
            DirInput::Seq(x) => (self.project(x, t * b, &split), None),
            DirInput::Rows { table, rows } if split.is_identity() => {
                (Vec::new(), Some((table, rows)))
            }
            DirInput::Rows { table, rows } => {
                let mut xg = vec![0.0; t * b * g];
                for (dst, &r) in xg.chunks_exact_mut(g).zip(rows) {
                    let src = &table[r as usize * g..(r as usize + 1) * g];
                    dst.iter_mut()
                        .zip(&split.order)
                        .for_each(|(d, &o)| *d = src[o]);
                }
                (xg, None)
            }
        };
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
        let xg = lookup.map_or(&xg[..], |l| l.0);
        let xg_row = |i: usize| lookup.map_or(i, |l| l.1[i] as usize);
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
            // The product's output and the gate pass's scratch: the fused step needs neither.
            let unfused = matches!(w, StepWeights::Product(_));
            let mut hg = vec![0.0; if unfused { b * gu } else { 0 }];
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
            let mut g_row = vec![0.0; if keep || !unfused { 0 } else { gu }];
            let mut hn_row = vec![0.0; if gru && !keep { u } else { 0 }];
            let mut x_off = vec![0; b];
            for s in 0..t {
                let tau = order(s);
                // SAFETY: slot(s) was completed by all threads before the last barrier and
                // nobody writes it during this step.
                let h_prev = unsafe { sh_hs.read(slot(s) * bh, bh) };
                let act = &active[tau * b..(tau + 1) * b];
                let w = match &w {
                    StepWeights::Product(w) => w,
                    StepWeights::Lstm(w) => {
                        for (bi, o) in x_off.iter_mut().enumerate() {
                            *o = xg_row(tau * b + bi) * g + c0;
                        }
                        // SAFETY: this thread's gate columns c0..c0+gu of the step's b rows
                        // (stride g), which no other thread touches.
                        let gates = if keep {
                            unsafe { sh_g.ptr(s * b * g + c0, b.saturating_sub(1) * g + gu) }
                        } else {
                            std::ptr::null_mut()
                        };
                        // SAFETY: units j0..j0+u of the step's b rows of the next state slot
                        // (stride hs): this thread's, and read by others only after the barrier.
                        let h_out = unsafe {
                            sh_hs.ptr(slot(s + 1) * bh + j0, b.saturating_sub(1) * hs + u)
                        };
                        let step = LstmStep {
                            h_prev,
                            h_rs: hs,
                            xg,
                            x_off: &x_off,
                            c: &mut cl,
                            h: h_out,
                            h_out_rs: hs,
                            gates,
                            g_rs: g,
                            active: act,
                            j0,
                        };
                        // SAFETY: `gates` and `h_out` as above.
                        unsafe { lstm_step(w, b, step) };
                        for (bi, &a) in act.iter().enumerate() {
                            let hr = bi * hs + j0;
                            // SAFETY: units j0..j0+u of row bi in each buffer: this thread's.
                            unsafe {
                                let h_row = sh_hs.read(slot(s + 1) * bh + hr, u);
                                if keep {
                                    sh_cs
                                        .seg((s + 1) * bh + hr, u)
                                        .copy_from_slice(&cl[bi * u..(bi + 1) * u]);
                                }
                                let y_row = sh_y.seg((tau * b + bi) * y_stride + y_off + j0, u);
                                if a {
                                    y_row.copy_from_slice(h_row);
                                } else {
                                    y_row.fill(0.0);
                                }
                            }
                        }
                        barrier.wait();
                        continue;
                    }
                };
                w.left_mul(b, &mut hg, gu, h_prev, hs, false);
                if gru {
                    add_bias_rows(&mut hg, &bias);
                }
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
                        let xr = xg_row(tau * b + bi) * g + c0;
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
        if gru {
            split.accumulate_rows(&mut self.b_ih.g, 1, |gb| sum_rows_into(gb, &dxg));
            split.accumulate_rows(&mut self.b_hh.g, 1, |gb| sum_rows_into(gb, dgh_all));
        } else {
            // Both biases add to the same gate sums: one pass over `[T·B, G·H]` serves both.
            let mut db = vec![0.0; g];
            sum_rows_into(&mut db, &dxg);
            for grad in [&mut self.b_ih.g, &mut self.b_hh.g] {
                split.accumulate_rows(grad, 1, |gb| {
                    gb.iter_mut().zip(&db).for_each(|(a, v)| *a += v)
                });
            }
        }
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

impl RnnDir {
    /// [`RnnDir::forward`] for a layer-normalised LSTM (same arguments and results).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_ln(
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
    ) -> DirCache {
        let ln = self.ln.as_ref().expect("LN-LSTM norms");
        let (hs, i) = (self.hidden, self.input());
        let (g, bh) = (4 * hs, b * hs);
        let order = |s: usize| if self.reverse { t - 1 - s } else { s };
        let mut xg = vec![0.0; t * b * g];
        matmul(t * b, g, i, &mut xg, x, false, &self.w_ih.w, true, false);
        let xcache = ln.ih.forward(&mut xg);
        add_bias_rows(&mut xg, &self.b_ih.w);
        add_bias_rows(&mut xg, &self.b_hh.w);
        let mut cache = DirCache::new(t, b, active);
        cache.x = x.to_vec();
        cache.hs = vec![0.0; (t + 1) * bh];
        cache.cs = vec![0.0; (t + 1) * bh];
        cache.gates = vec![0.0; t * b * g];
        cache.hs[..bh].copy_from_slice(h);
        cache.cs[..bh].copy_from_slice(c);
        let mut lc = LnCache {
            x: xcache,
            tc: vec![0.0; t * bh],
            ..Default::default()
        };
        let mut hg = vec![0.0; b * g];
        for s in 0..t {
            let tau = order(s);
            let act = &active[tau * b..(tau + 1) * b];
            let (before, after) = cache.hs.split_at_mut((s + 1) * bh);
            let h_prev = &before[s * bh..];
            matmul(b, g, hs, &mut hg, h_prev, false, &self.w_hh.w, true, false);
            lc.hh.push(ln.hh.forward(&mut hg));
            let pre = &mut cache.gates[s * b * g..(s + 1) * b * g];
            for ((p, a), v) in pre.iter_mut().zip(&xg[tau * b * g..]).zip(&hg) {
                *p = a + v;
            }
            let h_new = &mut after[..bh];
            h_new.copy_from_slice(h_prev);
            let (cb, ca) = cache.cs.split_at_mut((s + 1) * bh);
            let c_new = &mut ca[..bh];
            c_new.copy_from_slice(&cb[s * bh..]);
            let tc = &mut lc.tc[s * bh..(s + 1) * bh];
            lc.c.push(lnlstm::step(&ln.c, pre, c_new, h_new, tc, act));
            for (bi, &a) in act.iter().enumerate() {
                let row = &mut y[(tau * b + bi) * y_stride + y_off..][..hs];
                if a {
                    row.copy_from_slice(&h_new[bi * hs..(bi + 1) * hs]);
                } else {
                    row.fill(0.0);
                }
            }
        }
        h.copy_from_slice(&cache.hs[t * bh..]);
        c.copy_from_slice(&cache.cs[t * bh..]);
        cache.ln = Some(Box::new(lc));
        cache
    }

    /// [`RnnDir::backward`] for a layer-normalised LSTM.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward_ln(
        &mut self,
        ln: &mut CellNorm,
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
        let (hs, i) = (self.hidden, self.input());
        let (g, bh) = (4 * hs, b * hs);
        let order = |s: usize| if self.reverse { t - 1 - s } else { s };
        let lc = cache.ln.as_deref().expect("LN-LSTM cache");
        // dpre: gradient of the summed pre-activations, time order (feeds LN_ih and biases);
        // dhg: of W_hh h_{t−1} before LN_hh, processing order (feeds dW_hh).
        let mut dpre = vec![0.0; t * b * g];
        let mut dhg = vec![0.0; t * b * g];
        let mut dcl = vec![0.0; bh];
        for s in (0..t).rev() {
            let tau = order(s);
            let act = &cache.active[tau * b..(tau + 1) * b];
            let gates = &cache.gates[s * b * g..(s + 1) * b * g];
            let tc = &lc.tc[s * bh..(s + 1) * bh];
            // Through h_t = o ∘ tanh(LN_c(c_t)).
            for (bi, &a) in act.iter().enumerate() {
                let rows = bi * hs..(bi + 1) * hs;
                if !a {
                    dcl[rows].fill(0.0);
                    continue;
                }
                let dyr = &dy[(tau * b + bi) * dy_stride + dy_off..][..hs];
                let o = &gates[bi * g + 3 * hs..(bi + 1) * g];
                for (jj, j) in rows.enumerate() {
                    dh[j] += dyr[jj];
                    dcl[j] = dh[j] * o[jj] * (1.0 - tc[j] * tc[j]);
                }
            }
            ln.c.backward(&lc.c[s], &mut dcl);
            let dp = &mut dpre[tau * b * g..(tau + 1) * b * g];
            let c_prev = &cache.cs[s * bh..(s + 1) * bh];
            for (bi, &a) in act.iter().enumerate() {
                if !a {
                    continue;
                }
                let gr = &gates[bi * g..(bi + 1) * g];
                let dr = &mut dp[bi * g..(bi + 1) * g];
                for jj in 0..hs {
                    let j = bi * hs + jj;
                    let (ig, fg, gg, og) = (gr[jj], gr[hs + jj], gr[2 * hs + jj], gr[3 * hs + jj]);
                    let dct = dc[j] + dcl[j];
                    dr[jj] = dct * gg * ig * (1.0 - ig);
                    dr[hs + jj] = dct * c_prev[j] * fg * (1.0 - fg);
                    dr[2 * hs + jj] = dct * ig * (1.0 - gg * gg);
                    dr[3 * hs + jj] = dh[j] * tc[j] * og * (1.0 - og);
                    dc[j] = dct * fg;
                    dh[j] = 0.0;
                }
            }
            let dh_raw = &mut dhg[s * b * g..(s + 1) * b * g];
            dh_raw.copy_from_slice(dp);
            ln.hh.backward(&lc.hh[s], dh_raw);
            // Rows past their length keep dh (it flows to the earlier state unchanged);
            // active rows had theirs zeroed above and receive dpre_h · W_hh.
            matmul(b, hs, g, dh, dh_raw, false, &self.w_hh.w, false, true);
        }
        matmul(
            g,
            hs,
            t * b,
            &mut self.w_hh.g,
            &dhg,
            true,
            &cache.hs[..t * bh],
            false,
            true,
        );
        sum_rows_into(&mut self.b_ih.g, &dpre);
        sum_rows_into(&mut self.b_hh.g, &dpre);
        ln.ih.backward(&lc.x, &mut dpre);
        matmul(
            g,
            i,
            t * b,
            &mut self.w_ih.g,
            &dpre,
            true,
            &cache.x,
            false,
            true,
        );
        matmul(
            t * b,
            i,
            g,
            dx,
            &dpre,
            false,
            &self.w_ih.w,
            false,
            dx_accumulate,
        );
    }
}
