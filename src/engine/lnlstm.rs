//! The layer-normalised LSTM of Ba, Kiros & Hinton 2016 (eqs. 20–22):
//!
//! ```text
//! (i, f, g, o) = LN_ih(W_ih x_t) + LN_hh(W_hh h_{t−1}) + b_ih + b_hh     each [4H]
//! c_t = σ(f)∘c_{t−1} + σ(i)∘tanh(g)
//! h_t = σ(o)∘tanh(LN_c(c_t))
//! ```
//!
//! The two projections are normalised separately over all 4H gate pre-activations (so the
//! input and the recurrent contributions arrive at the same scale whatever the weights),
//! and the cell state is normalised before its tanh. Each LayerNorm has its own gain and
//! bias, stored as `{prefix}.ln_ih_l{k}[_reverse].weight` / `.bias`, and likewise `ln_hh`
//! (both `[4H]`) and `ln_c` (`[H]`).
//!
//! A normalisation couples all hidden units of a row, so this time loop cannot be split
//! over units across threads as the plain cells' loop is; it runs one thread per
//! direction and lets the per-step GEMMs use the pool. The input projection and its
//! normalisation are still done for all timesteps at once.

use super::norm::{LayerNorm, NormCache};
use super::ops::{sigmoid, tanh};
use super::param::{Module, Param};

/// The three LayerNorms of one LN-LSTM direction.
#[derive(Clone, Debug)]
pub struct CellNorm {
    pub ih: LayerNorm,
    pub hh: LayerNorm,
    pub c: LayerNorm,
}

impl CellNorm {
    /// `suffix` is `_l{k}` or `_l{k}_reverse`, as for the weights.
    pub fn new(prefix: &str, suffix: &str, hidden: usize) -> CellNorm {
        let ln = |n: &str, f| LayerNorm::new(&format!("{prefix}.{n}{suffix}"), f);
        CellNorm {
            ih: ln("ln_ih", 4 * hidden),
            hh: ln("ln_hh", 4 * hidden),
            c: ln("ln_c", hidden),
        }
    }
}

impl Module for CellNorm {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        self.ih.visit(f);
        self.hh.visit(f);
        self.c.visit(f);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        self.ih.visit_mut(f);
        self.hh.visit_mut(f);
        self.c.visit_mut(f);
    }
}

/// What backward needs beyond [`super::dir::DirCache`]'s states and gates.
#[derive(Clone, Debug, Default)]
pub struct LnCache {
    /// LN_ih over all `[T·B, 4H]` input projections (time order).
    pub(crate) x: NormCache,
    /// LN_hh and LN_c per step, in processing order.
    pub(crate) hh: Vec<NormCache>,
    pub(crate) c: Vec<NormCache>,
    /// tanh(LN_c(c_t)) `[T, B, H]`, processing order.
    pub(crate) tc: Vec<f32>,
}

/// One step's gate math after the projections: `pre [B, 4H]` (pre-activations in, gates
/// after their nonlinearity out), `c [B, H]` (c_{t−1} in, c_t out), `h [B, H]` (h_t out),
/// `tc [B, H]` (tanh(LN_c(c_t)) out, for active rows). Rows that are not `active` keep their
/// h and c. Returns LN_c's cache for backward.
pub fn step(
    ln_c: &LayerNorm,
    pre: &mut [f32],
    c: &mut [f32],
    h: &mut [f32],
    tc: &mut [f32],
    active: &[bool],
) -> NormCache {
    let mut cn = vec![0.0; c.len()];
    let mut cache = NormCache::default();
    step_body(pre, c, h, tc, &mut cn, active, |x| cache = ln_c.forward(x));
    cache
}

/// [`step`] for inference: `(cn [B, H], scratch)` are caller-owned buffers, so a decoder
/// step allocates nothing.
pub fn step_eval(
    ln_c: &LayerNorm,
    pre: &mut [f32],
    c: &mut [f32],
    h: &mut [f32],
    tc: &mut [f32],
    (cn, scratch): (&mut Vec<f32>, &mut Vec<f32>),
    active: &[bool],
) {
    cn.resize(c.len(), 0.0);
    step_body(pre, c, h, tc, cn, active, |x| ln_c.forward_eval(x, scratch));
}

fn step_body(
    pre: &mut [f32],
    c: &mut [f32],
    h: &mut [f32],
    tc: &mut [f32],
    cn: &mut [f32],
    active: &[bool],
    norm_c: impl FnOnce(&mut [f32]),
) {
    let hs = c.len() / active.len().max(1);
    for (r, p) in pre.chunks_exact_mut(4 * hs).enumerate() {
        let (ifg, o) = p.split_at_mut(3 * hs);
        let (i, fg) = ifg.split_at_mut(hs);
        let (f, g) = fg.split_at_mut(hs);
        i.iter_mut().for_each(|v| *v = sigmoid(*v));
        f.iter_mut().for_each(|v| *v = sigmoid(*v));
        g.iter_mut().for_each(|v| *v = tanh(*v));
        o.iter_mut().for_each(|v| *v = sigmoid(*v));
        let cr = &c[r * hs..(r + 1) * hs];
        for j in 0..hs {
            cn[r * hs + j] = f[j] * cr[j] + i[j] * g[j];
        }
    }
    // LN_c(c_t) is formed in `tc` itself; rows of finished sequences keep it unsquashed,
    // and backward never reads them.
    tc.copy_from_slice(cn);
    norm_c(tc);
    for (r, &a) in active.iter().enumerate() {
        if !a {
            continue;
        }
        let rows = r * hs..(r + 1) * hs;
        c[rows.clone()].copy_from_slice(&cn[rows.clone()]);
        let o = &pre[r * 4 * hs + 3 * hs..(r + 1) * 4 * hs];
        for (jj, j) in rows.enumerate() {
            tc[j] = tanh(tc[j]);
            h[j] = o[jj] * tc[j];
        }
    }
}
