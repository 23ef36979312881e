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

use crate::engine::bf16::{self, Start};
use crate::engine::cell::CellKind;
use crate::engine::init::{self, Init};
use crate::engine::lnlstm::{CellNorm, LnCache};
use crate::engine::ops::Mat;
use crate::engine::ops::{matmul_from, Panels};
use crate::engine::panel32::{self, LstmPanels};
use crate::engine::par::Split;
use crate::engine::param::{Module, Param};
use rand::RngCore;

mod backward;
mod forward;
mod ln;

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

/// The steps a direction runs over: `[T, B]`, and which (step, sequence) positions are
/// real (`active [T·B]`, from [`active_mask`]).
#[derive(Clone, Copy)]
pub struct Steps<'a> {
    pub t: usize,
    pub b: usize,
    pub active: &'a [bool],
}

/// One direction's columns of a row-major buffer: columns `off..off + H` of rows `stride`
/// wide, so that two directions fill (or read) one concatenated `[T, B, D·H]`.
pub struct Cols<S> {
    pub data: S,
    pub stride: usize,
    pub off: usize,
}

impl<S> Cols<S> {
    pub fn of(data: S, stride: usize, off: usize) -> Cols<S> {
        Cols { data, stride, off }
    }
}

/// Where backward writes dL/dx `[T, B, I]`: over what is there, or added to it
/// (`accumulate`: a layer's second direction adds to the first's).
pub struct Dx<'a> {
    pub data: &'a mut [f32],
    pub accumulate: bool,
}

impl<'a> Dx<'a> {
    /// Overwriting dx.
    pub fn set(data: &'a mut [f32]) -> Dx<'a> {
        Dx {
            data,
            accumulate: false,
        }
    }
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
        matmul_from(
            &mut xg,
            [n, g, i],
            Mat::n(x),
            Mat::t(&w_ih),
            Start::Rows(&bias),
        );
        xg
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
