//! The layer-normalised LSTM's time loop (Ba et al. 2016), forward and backward: the
//! normalisations sit between the products and the gates, so it runs its own loop.

use super::*;
use crate::engine::lnlstm::{self, CellNorm, LnCache};
use crate::engine::ops::Mat;
use crate::engine::ops::{add_bias_rows, matmul, sum_rows_into};

impl RnnDir {
    /// [`RnnDir::forward`] for a layer-normalised LSTM (same arguments and results).
    pub(crate) fn forward_ln(
        &self,
        x: &[f32],
        steps: Steps,
        h: &mut [f32],
        c: &mut [f32],
        y: Cols<&mut [f32]>,
    ) -> DirCache {
        let Steps { t, b, active } = steps;
        let (y, y_stride, y_off) = (y.data, y.stride, y.off);
        let ln = self.ln.as_ref().expect("LN-LSTM norms");
        let (hs, i) = (self.hidden, self.input());
        let (g, bh) = (4 * hs, b * hs);
        let order = |s: usize| if self.reverse { t - 1 - s } else { s };
        let mut xg = vec![0.0; t * b * g];
        matmul(
            &mut xg,
            [t * b, g, i],
            Mat::n(x),
            Mat::t(&self.w_ih.w),
            false,
        );
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
            matmul(
                &mut hg,
                [b, g, hs],
                Mat::n(h_prev),
                Mat::t(&self.w_hh.w),
                false,
            );
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
    pub(crate) fn backward_ln(
        &mut self,
        ln: &mut CellNorm,
        cache: &DirCache,
        dy: Cols<&[f32]>,
        dh: &mut [f32],
        dc: &mut [f32],
        dx: Dx,
    ) {
        let (dy, dy_stride, dy_off) = (dy.data, dy.stride, dy.off);
        let (dx, dx_accumulate) = (dx.data, dx.accumulate);
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
            matmul(dh, [b, hs, g], Mat::n(dh_raw), Mat::n(&self.w_hh.w), true);
        }
        matmul(
            &mut self.w_hh.g,
            [g, hs, t * b],
            Mat::t(&dhg),
            Mat::n(&cache.hs[..t * bh]),
            true,
        );
        sum_rows_into(&mut self.b_ih.g, &dpre);
        sum_rows_into(&mut self.b_hh.g, &dpre);
        ln.ih.backward(&lc.x, &mut dpre);
        matmul(
            &mut self.w_ih.g,
            [g, i, t * b],
            Mat::t(&dpre),
            Mat::n(&cache.x),
            true,
        );
        matmul(
            dx,
            [t * b, i, g],
            Mat::n(&dpre),
            Mat::n(&self.w_ih.w),
            dx_accumulate,
        );
    }
}
