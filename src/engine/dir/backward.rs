//! One direction's backward pass through time: the cell's backward per step in reverse,
//! then the weight gradients as two whole-sequence products.

use super::*;
use crate::engine::cell::{step_backward, CellKind, StepBwd};
use crate::engine::ops::Mat;
use crate::engine::ops::{matmul, sum_rows_into};
use crate::engine::ops::{Out, Strided};
use crate::engine::par::{run_parts, Shared, SpinBarrier, Split};

impl RnnDir {
    /// dy `[T, B, ·]` read in this direction's columns, as forward wrote them; `dh`, `dc`
    /// `[B, H]` hold dL/d(final state) on entry and dL/d(initial state) on return.
    /// Accumulates the weight gradients and writes (or adds to) dx `[T, B, I]`.
    pub fn backward(
        &mut self,
        cache: &DirCache,
        dy: Cols<&[f32]>,
        dh: &mut [f32],
        dc: &mut [f32],
        dx: Dx,
    ) {
        if let Some(mut ln) = self.ln.take() {
            self.backward_ln(&mut ln, cache, dy, dh, dc, dx);
            self.ln = Some(ln);
            return;
        }
        let (dy, dy_stride, dy_off) = (dy.data, dy.stride, dy.off);
        let (dx, dx_accumulate) = (dx.data, dx.accumulate);
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
                w_cols.left_mul(
                    b,
                    Out {
                        data: &mut dhl,
                        rs: u,
                    },
                    Strided::rows(dgh, g),
                    true,
                );
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
            matmul(gw, [g, i, t * b], Mat::t(&dxg), Mat::n(&cache.x), true)
        });
        split.accumulate_rows(&mut self.w_hh.g, hs, |gw| {
            matmul(
                gw,
                [g, hs, t * b],
                Mat::t(dgh_all),
                Mat::n(&cache.hs[..t * bh]),
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
            matmul(&mut tmp, [t * b, i, g], Mat::n(&dxg), Mat::n(&w_ih), false);
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
            matmul(
                dx,
                [t * b, i, g],
                Mat::n(&dxg),
                Mat::n(&w_ih),
                dx_accumulate,
            );
        }
    }
}
