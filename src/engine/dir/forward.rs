//! One direction's fused forward time loop: one product projects every step's input,
//! then each thread steps its units of the state (the product with W_hh and the cell's gate
//! pass, or the fused LSTM step), meeting the others at a barrier per step.

use super::*;
use crate::engine::cell::{step_forward, CellKind, StepFwd};
use crate::engine::ops::add_bias_rows;
use crate::engine::ops::{Out, Strided};
use crate::engine::panel32::{lstm_step, LstmStep};
use crate::engine::par::{loop_threads, run_parts, Shared, SpinBarrier, Split};

impl RnnDir {
    /// Input (x `[T, B, I]` or looked-up rows, see [`DirInput`]) over `steps` → y
    /// `[T, B, H]` written into its columns `y` (so two directions can fill one
    /// concatenated output). `h`, `c` `[B, H]` (c empty unless LSTM) hold the initial state
    /// and receive the final one.
    pub fn forward(
        &self,
        input: DirInput,
        steps: Steps,
        h: &mut [f32],
        c: &mut [f32],
        y: Cols<&mut [f32]>,
        keep: bool,
    ) -> DirCache {
        let Steps { t, b, active } = steps;
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
            return self.forward_ln(x, steps, h, c, y);
        }
        let (y, y_stride, y_off) = (y.data, y.stride, y.off);
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
                w.left_mul(
                    b,
                    Out {
                        data: &mut hg,
                        rs: gu,
                    },
                    Strided::rows(h_prev, hs),
                    false,
                );
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
}
