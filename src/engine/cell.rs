//! The recurrent cells' gate math for one timestep, forward and backward, fused into one
//! pass over a batch. The sequence layer and the single-step decoder API both call these,
//! so there is exactly one implementation of each equation.
//!
//! Inputs per step (batch B, hidden H, gates G = 1, 4 or 3):
//! - `xg [B, G·H]`: W_ih x_t + b_ih (plus b_hh for the cells where it simply adds),
//! - `hg [B, G·H]`: W_hh h_{t−1} (plus b_hh for GRU, whose n gate scales it by r).
//!
//! Gate layout follows PyTorch: LSTM `i, f, g, o`; GRU `r, z, n`.

use super::ops::{map_in_place, sigmoid, tanh};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Elman RNN, h_t = tanh(W h_{t−1} + U x_t + b).
    Rnn,
    /// Elman RNN with ReLU instead of tanh.
    RnnRelu,
    Lstm,
    Gru,
}

impl CellKind {
    /// Gate blocks in the weight matrices.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Rnn | CellKind::RnnRelu => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// GRU keeps b_hn apart from the x-side sum; every other cell folds b_hh into xg.
    pub fn folds_hidden_bias(self) -> bool {
        self != CellKind::Gru
    }

    pub fn has_cell_state(self) -> bool {
        self == CellKind::Lstm
    }

    pub fn parse(s: &str) -> Option<CellKind> {
        s.parse().ok()
    }
}

impl std::str::FromStr for CellKind {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<CellKind> {
        Ok(match s {
            "rnn" | "rnn_tanh" => CellKind::Rnn,
            "rnn_relu" => CellKind::RnnRelu,
            "lstm" => CellKind::Lstm,
            "gru" => CellKind::Gru,
            _ => {
                return Err(crate::error::Error::config(format!(
                    "{s:?}: expected rnn, rnn_relu, lstm or gru"
                )))
            }
        })
    }
}

/// The `N` gate blocks of one row `[N·h]`, each exactly `h` long.
#[inline(always)]
fn gate_blocks<const N: usize>(row: &[f32], h: usize) -> [&[f32]; N] {
    std::array::from_fn(|k| &row[k * h..(k + 1) * h])
}

/// Per-step buffers, all `[B, ·]` row-major slices.
pub struct StepFwd<'a> {
    pub xg: &'a [f32],
    pub hg: &'a [f32],
    /// h_{t−1} `[B, H]`.
    pub h_prev: &'a [f32],
    /// Out: h_t `[B, H]` (a copy of h_{t−1} for inactive sequences). A separate buffer
    /// from `h_prev`, so that threads owning other hidden units can still read h_{t−1}.
    pub h: &'a mut [f32],
    /// In: c_{t−1}; out: c_t (LSTM only, else empty).
    pub c: &'a mut [f32],
    /// Out: post-activation gates `[B, G·H]`, kept for backward.
    pub gates: &'a mut [f32],
    /// Out (GRU only): W_hn h_{t−1} + b_hn `[B, H]`, kept for backward.
    pub hn: &'a mut [f32],
    /// `active[b]` is false at padding steps: the state passes through unchanged.
    pub active: &'a [bool],
}

/// The LSTM step for a small H as passes over the whole batch `[B, 4·H]` rather than row by
/// row: with the tagger's 25-unit character LSTM a row's gate is a vector or two long,
/// and per-row loops spent more on their remainders and setup than on the arithmetic.
/// The cell input's tanh is 2σ(2x) − 1 (the same function, to the same ~1e-7), so one
/// sigmoid pass covers all four gates; then c and tanh(c) are one pass each.
#[inline(always)]
fn lstm_step(hsz: usize, s: StepFwd) {
    let (nb, g4) = (s.active.len(), 4 * hsz);
    let gates = &mut s.gates[..nb * g4];
    for ((gt, xg), hg) in gates
        .chunks_exact_mut(g4)
        .zip(s.xg.chunks_exact(g4))
        .zip(s.hg.chunks_exact(g4))
    {
        for ((d, a), b) in gt.iter_mut().zip(xg).zip(hg) {
            *d = a + b;
        }
        gt[2 * hsz..3 * hsz].iter_mut().for_each(|v| *v *= 2.0);
    }
    map_in_place(gates, sigmoid);
    let c = &mut s.c[..nb * hsz];
    for ((gt, c), &act) in gates
        .chunks_exact_mut(g4)
        .zip(c.chunks_exact_mut(hsz))
        .zip(s.active)
    {
        let (gi, rest) = gt.split_at_mut(hsz);
        let (gf, rest) = rest.split_at_mut(hsz);
        let gg = &mut rest[..hsz];
        gg.iter_mut().for_each(|v| *v = 2.0 * *v - 1.0);
        // An inactive (padding) row keeps its state.
        if act {
            for (((cj, &i), &f), &g) in c.iter_mut().zip(&*gi).zip(&*gf).zip(&*gg) {
                *cj = f * *cj + i * g;
            }
        }
    }
    let h = &mut s.h[..nb * hsz];
    h.copy_from_slice(c);
    map_in_place(h, tanh);
    for (((h, hp), gt), &act) in h
        .chunks_exact_mut(hsz)
        .zip(s.h_prev.chunks_exact(hsz))
        .zip(gates.chunks_exact(g4))
        .zip(s.active)
    {
        if act {
            h.iter_mut().zip(&gt[3 * hsz..]).for_each(|(h, &o)| *h *= o);
        } else {
            h.copy_from_slice(hp);
        }
    }
}

crate::multiversion!(
    /// One timestep of the cell over a batch (see [`StepFwd`]).
    pub fn step_forward(kind: CellKind, hsz: usize, s: StepFwd) => step_forward_body
);

#[inline(always)]
fn step_forward_body(kind: CellKind, hsz: usize, s: StepFwd) {
    // Rows of 64 units or more vectorise well one by one, and a row's gates stay in L1;
    // whole-batch passes would stream `[B, 4·H]` through L2 five times (the 2×512 char
    // model ran 8–17% slower that way).
    if kind == CellKind::Lstm && hsz < 64 {
        return lstm_step(hsz, s);
    }
    let g = kind.gates() * hsz;
    for (b, &act) in s.active.iter().enumerate() {
        let hp = &s.h_prev[b * hsz..(b + 1) * hsz];
        if !act {
            s.h[b * hsz..(b + 1) * hsz].copy_from_slice(hp);
            continue;
        }
        let xg = &s.xg[b * g..(b + 1) * g];
        let hg = &s.hg[b * g..(b + 1) * g];
        let gt = &mut s.gates[b * g..(b + 1) * g];
        let h = &mut s.h[b * hsz..(b + 1) * hsz];
        match kind {
            CellKind::Rnn => {
                for j in 0..hsz {
                    h[j] = tanh(xg[j] + hg[j]);
                    gt[j] = h[j];
                }
            }
            CellKind::RnnRelu => {
                for j in 0..hsz {
                    h[j] = (xg[j] + hg[j]).max(0.0);
                    gt[j] = h[j];
                }
            }
            CellKind::Lstm => {
                let c = &mut s.c[b * hsz..(b + 1) * hsz];
                let (gi, rest) = gt.split_at_mut(hsz);
                let (gf, rest) = rest.split_at_mut(hsz);
                let (gg, go) = rest.split_at_mut(hsz);
                // Simple passes over contiguous slices, each of which the compiler
                // vectorises across units (one fused loop over four gates does not).
                for (k, dst) in [&mut *gi, &mut *gf, &mut *gg, &mut *go]
                    .into_iter()
                    .enumerate()
                {
                    let (x, hh) = (&xg[k * hsz..(k + 1) * hsz], &hg[k * hsz..(k + 1) * hsz]);
                    for ((d, a), b) in dst.iter_mut().zip(x).zip(hh) {
                        *d = a + b;
                    }
                }
                // Three loops, not one over a `chain`: `Chain::fold` is not inlined, so
                // its body would be compiled without this function's AVX2 (a tenth of
                // a tagger's time went there).
                for gate in [&mut *gi, &mut *gf, &mut *go] {
                    map_in_place(gate, sigmoid);
                }
                map_in_place(gg, tanh);
                for (((cj, &i), &f), &g) in c.iter_mut().zip(&*gi).zip(&*gf).zip(&*gg) {
                    *cj = f * *cj + i * g;
                }
                h.copy_from_slice(c);
                map_in_place(h, tanh);
                h.iter_mut().zip(&*go).for_each(|(hj, &o)| *hj *= o);
            }
            CellKind::Gru => {
                let hn = &mut s.hn[b * hsz..(b + 1) * hsz];
                for j in 0..hsz {
                    let r = sigmoid(xg[j] + hg[j]);
                    let z = sigmoid(xg[hsz + j] + hg[hsz + j]);
                    let hnv = hg[2 * hsz + j];
                    let n = tanh(xg[2 * hsz + j] + r * hnv);
                    h[j] = (1.0 - z) * n + z * hp[j];
                    gt[j] = r;
                    gt[hsz + j] = z;
                    gt[2 * hsz + j] = n;
                    hn[j] = hnv;
                }
            }
        }
    }
}

/// Per-step buffers for backward.
pub struct StepBwd<'a> {
    pub gates: &'a [f32],
    pub hn: &'a [f32],
    /// h_{t−1} `[B, H]` (GRU needs it).
    pub h_prev: &'a [f32],
    /// c_{t−1} and c_t `[B, H]` (LSTM only).
    pub c_prev: &'a [f32],
    pub c: &'a [f32],
    /// In: dL/dh_t (all paths); out: the part of dL/dh_{t−1} that bypasses W_hh
    /// (GRU's z∘h term; zero for other cells; unchanged for inactive rows).
    pub dh: &'a mut [f32],
    /// In: dL/dc_t; out: dL/dc_{t−1} (LSTM only).
    pub dc: &'a mut [f32],
    /// Out: gradient w.r.t. the x-side pre-activations `[B, G·H]`.
    pub dxg: &'a mut [f32],
    /// Out: gradient w.r.t. the h-side pre-activations `[B, G·H]` (GRU only; for the other
    /// cells it equals `dxg`, and callers pass an empty slice).
    pub dhg: &'a mut [f32],
    pub active: &'a [bool],
}

/// The LSTM backward arithmetic over equal-length slices of units, shared by the row loop
/// and the gathered passes: gates `[i, f, g, o]`, c_{t−1}, dL/dh (zeroed) and dL/dc (made
/// dL/dc_{t−1}) in; `d = [di, df, dg, do]` out, with `do` holding tanh(c_t) on entry.
#[inline(always)]
fn lstm_backward_units(
    [gi, gf, gg, go]: [&[f32]; 4],
    cp: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    [di, df, dg, d_o]: [&mut [f32]; 4],
) {
    let n = dh.len();
    let (gi, gf, gg, go, cp, dc) = (
        &gi[..n],
        &gf[..n],
        &gg[..n],
        &go[..n],
        &cp[..n],
        &mut dc[..n],
    );
    let (di, df, dg, d_o) = (&mut di[..n], &mut df[..n], &mut dg[..n], &mut d_o[..n]);
    for j in 0..n {
        let (i, f, gv, o, tc) = (gi[j], gf[j], gg[j], go[j], d_o[j]);
        let dcj = dc[j] + dh[j] * o * (1.0 - tc * tc);
        d_o[j] = dh[j] * tc * o * (1.0 - o);
        di[j] = dcj * gv * i * (1.0 - i);
        df[j] = dcj * cp[j] * f * (1.0 - f);
        dg[j] = dcj * i * (1.0 - gv * gv);
        dc[j] = dcj * f;
        dh[j] = 0.0;
    }
}

/// The LSTM's backward step for a small H, the same arithmetic as the row loop of
/// [`step_backward_body`] in flat passes: a row of 25 units is one 16-wide vector and nine
/// scalar iterations, and the scalar remainders were most of the tagger's character LSTM
/// backward. The gates are gathered gate-major `[4, B·H]`, the math runs over all B·H
/// units at once, and the gradients scatter back to `[B, 4·H]`.
#[inline(always)]
fn lstm_backward_gathered(hsz: usize, s: StepBwd) {
    let (nb, g4) = (s.active.len(), 4 * hsz);
    let n = nb * hsz;
    let mut gm = Vec::with_capacity(4 * n);
    for k in 0..4 {
        for row in s.gates[..nb * g4].chunks_exact(g4) {
            gm.extend_from_slice(&row[k * hsz..(k + 1) * hsz]);
        }
    }
    // Inactive (padding) rows keep dh and dc, and get zero gradients.
    let all = s.active.iter().all(|&a| a);
    let kept: Vec<f32> = match all {
        true => Vec::new(),
        false => [&s.dh[..n], &s.dc[..n]].concat(),
    };
    let mut d = vec![0.0f32; 4 * n];
    {
        let (gi, rest) = gm.split_at(n);
        let (gf, rest) = rest.split_at(n);
        let (gg, go) = rest.split_at(n);
        let (di, rest) = d.split_at_mut(n);
        let (df, rest) = rest.split_at_mut(n);
        let (dg, d_o) = rest.split_at_mut(n);
        for (t, &c) in d_o.iter_mut().zip(&s.c[..n]) {
            *t = tanh(c);
        }
        let (dh, dc, cp) = (&mut s.dh[..n], &mut s.dc[..n], &s.c_prev[..n]);
        lstm_backward_units([gi, gf, gg, go], cp, dh, dc, [di, df, dg, d_o]);
    }
    for (b, row) in s.dxg[..nb * g4].chunks_exact_mut(g4).enumerate() {
        if s.active[b] {
            for k in 0..4 {
                row[k * hsz..(k + 1) * hsz]
                    .copy_from_slice(&d[k * n + b * hsz..k * n + (b + 1) * hsz]);
            }
        } else {
            row.fill(0.0);
            let r = b * hsz..(b + 1) * hsz;
            s.dh[r.clone()].copy_from_slice(&kept[r.clone()]);
            s.dc[r.clone()].copy_from_slice(&kept[n + r.start..n + r.end]);
        }
    }
}

crate::multiversion!(
    /// Backward of one timestep (see [`StepBwd`]).
    pub fn step_backward(kind: CellKind, hsz: usize, s: StepBwd) => step_backward_body
);

#[inline(always)]
fn step_backward_body(kind: CellKind, hsz: usize, s: StepBwd) {
    if kind == CellKind::Lstm && hsz < 64 {
        return lstm_backward_gathered(hsz, s);
    }
    let g = kind.gates() * hsz;
    for (b, &act) in s.active.iter().enumerate() {
        let dxg = &mut s.dxg[b * g..(b + 1) * g];
        if !act {
            dxg.fill(0.0);
            if kind == CellKind::Gru {
                s.dhg[b * g..(b + 1) * g].fill(0.0);
            }
            continue;
        }
        let gt = &s.gates[b * g..(b + 1) * g];
        let dh = &mut s.dh[b * hsz..(b + 1) * hsz];
        match kind {
            CellKind::Rnn => {
                for j in 0..hsz {
                    dxg[j] = dh[j] * (1.0 - gt[j] * gt[j]);
                    dh[j] = 0.0;
                }
            }
            CellKind::RnnRelu => {
                for j in 0..hsz {
                    dxg[j] = if gt[j] > 0.0 { dh[j] } else { 0.0 };
                    dh[j] = 0.0;
                }
            }
            CellKind::Lstm => {
                let dc = &mut s.dc[b * hsz..(b + 1) * hsz];
                let cp = &s.c_prev[b * hsz..(b + 1) * hsz];
                let cc = &s.c[b * hsz..(b + 1) * hsz];
                let [gi, gf, gg, go] = gate_blocks::<4>(gt, hsz);
                let (di, rest) = dxg.split_at_mut(hsz);
                let (df, rest) = rest.split_at_mut(hsz);
                let (dg, d_o) = rest.split_at_mut(hsz);
                // tanh(c_t) first, parked in the o-gate slot, so the main loop is plain
                // arithmetic over equal-length slices and vectorises.
                for (t, &c) in d_o.iter_mut().zip(cc) {
                    *t = tanh(c);
                }
                lstm_backward_units([gi, gf, gg, go], cp, dh, dc, [di, df, dg, d_o]);
            }
            CellKind::Gru => {
                let dhg = &mut s.dhg[b * g..(b + 1) * g];
                let hp = &s.h_prev[b * hsz..(b + 1) * hsz];
                let hn = &s.hn[b * hsz..(b + 1) * hsz];
                for j in 0..hsz {
                    let (r, z, n) = (gt[j], gt[hsz + j], gt[2 * hsz + j]);
                    let d = dh[j];
                    let dn = d * (1.0 - z) * (1.0 - n * n);
                    let dz = d * (hp[j] - n) * z * (1.0 - z);
                    let dr = dn * hn[j] * r * (1.0 - r);
                    dxg[j] = dr;
                    dxg[hsz + j] = dz;
                    dxg[2 * hsz + j] = dn;
                    dhg[j] = dr;
                    dhg[hsz + j] = dz;
                    dhg[2 * hsz + j] = dn * r;
                    dh[j] = d * z;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, seed: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 + seed) * 0.731).sin() * 2.0)
            .collect()
    }

    /// The whole-batch LSTM passes (small H) against the row loops (H ≥ 64) on the same
    /// inputs, with a padding row: forward to float rounding, backward bit for bit.
    #[test]
    fn lstm_batch_passes_match_row_loops() {
        let (nb, h) = (5, 64);
        let active = [true, false, true, true, true];
        let (xg, hg, hp, c0) = (
            vals(nb * 4 * h, 1.0),
            vals(nb * 4 * h, 2.0),
            vals(nb * h, 3.0),
            vals(nb * h, 4.0),
        );
        let fwd = |flat: bool| {
            let (mut hh, mut c, mut gates) = (vec![0.0; nb * h], c0.clone(), vec![0.0; nb * 4 * h]);
            let s = StepFwd {
                xg: &xg,
                hg: &hg,
                h_prev: &hp,
                h: &mut hh,
                c: &mut c,
                gates: &mut gates,
                hn: &mut [],
                active: &active,
            };
            match flat {
                true => lstm_step(h, s),
                false => step_forward_body(CellKind::Lstm, h, s),
            }
            (hh, c, gates)
        };
        let (a, b) = (fwd(true), fwd(false));
        for (x, y) in [(&a.0, &b.0), (&a.1, &b.1)]
            .into_iter()
            .flat_map(|(p, q)| p.iter().zip(q))
        {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
        // Gates of active rows (a padding row's gates are not used).
        for (r, &act) in active.iter().enumerate() {
            if act {
                let g = r * 4 * h..(r + 1) * 4 * h;
                for (x, y) in a.2[g.clone()].iter().zip(&b.2[g]) {
                    assert!((x - y).abs() < 1e-6);
                }
            }
        }
        let (dh0, dc0, cp) = (vals(nb * h, 5.0), vals(nb * h, 6.0), vals(nb * h, 7.0));
        let bwd = |gathered: bool| {
            let (mut dh, mut dc, mut dxg) = (dh0.clone(), dc0.clone(), vec![1.0; nb * 4 * h]);
            let s = StepBwd {
                gates: &b.2,
                hn: &[],
                h_prev: &hp,
                c_prev: &cp,
                c: &b.1,
                dh: &mut dh,
                dc: &mut dc,
                dxg: &mut dxg,
                dhg: &mut [],
                active: &active,
            };
            match gathered {
                true => lstm_backward_gathered(h, s),
                false => step_backward_body(CellKind::Lstm, h, s),
            }
            (dh, dc, dxg)
        };
        assert_eq!(bwd(true), bwd(false));
    }
}
