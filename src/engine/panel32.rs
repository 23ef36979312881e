//! An AVX-512 fp32 kernel for the products a time loop repeats at every step with the same
//! right operand (h·W_hh forward, dG·W_hh backward, one thread's share of the units).
//!
//! `gemm` packs both operands on every call and tunes its blocks for large products; for the
//! skinny `[B ≤ 64, H]` left operand of a step the packing and the call overhead are a large
//! part of the work (the B = 64, H = 512 step product reached 69–87% of MKL through `gemm`).
//! Here the right operand is packed once per sequence into 32-column panels and the left
//! operand is read in place: an `MR × 32` block of c lives in `2·MR` registers while k runs,
//! each step loading two vectors of the panel and broadcasting `MR` values of a.

use crate::engine::ops::{Out, Strided};

/// Columns per panel: two 16-float vectors.
pub const NR: usize = 32;
/// The tallest register block: 28 accumulators, two panel vectors and a broadcast fit in
/// the 32 vector registers.
const MR_MAX: usize = 14;

/// `b [k, n]` (row stride `rs`) as `⌈n/32⌉` panels `[k, 32]`, each row zero-padded to 32.
pub fn pack(b: &[f32], rs: usize, k: usize, n: usize) -> Vec<f32> {
    let panels = n.div_ceil(NR);
    let mut out = vec![0.0; panels * k * NR];
    for (p, panel) in out
        .chunks_exact_mut((k * NR).max(1))
        .enumerate()
        .take(panels)
    {
        let (j0, w) = (p * NR, NR.min(n - p * NR));
        for (r, row) in panel.chunks_exact_mut(NR).enumerate() {
            row[..w].copy_from_slice(&b[r * rs + j0..r * rs + j0 + w]);
        }
    }
    out
}

/// Whether the time loops use these kernels: the CPU can run them ([`supported`]) and they
/// were measured faster there. On Intel (Xeon with AMX) they ran the step products 1.3–1.7×
/// `gemm` and lifted tagging and classification; on AMD Zen 4, whose 512-bit FMAs issue as two
/// halves, training leaned 1–4% towards the `gemm` panels in four A/B sets (docs/results.md),
/// so AMD keeps those. `RNNKIT_PANEL32=1` or `=0` overrides the choice (A/B runs). Read once.
pub fn available() -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        supported()
            && match std::env::var("RNNKIT_PANEL32").as_deref() {
                Ok("0") => false,
                Ok("1") => true,
                _ => !cpu_is_amd(),
            }
    })
}

/// Whether the CPU can run the kernels (AVX-512F), chosen or not: what the tests and the
/// probe check.
pub fn supported() -> bool {
    cpu_has_avx512f()
}

fn cpu_is_amd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID leaf 0: the vendor string in ebx, edx, ecx ("Auth" "enti" "cAMD").
        #[allow(unused_unsafe)]
        let r = unsafe { std::arch::x86_64::__cpuid(0) };
        let word = |s: &[u8; 4]| u32::from_le_bytes(*s);
        (r.ebx, r.edx, r.ecx) == (word(b"Auth"), word(b"enti"), word(b"cAMD"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Its own feature test rather than `ops::has_avx512`: `ops` calls this module, and the
/// kernels here need AVX-512F only.
fn cpu_has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c[m, n] (+)= a[m, k] · b`, with `b` from [`pack`] and `a`'s rows contiguous.
/// One thread. Panics unless [`supported`].
pub fn left_mul([m, n, k]: [usize; 3], c: Out, a: Strided, b: &[f32], accumulate: bool) {
    assert!(supported(), "panel32 needs AVX-512F");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        a.cs == 1 && b.len() >= n.div_ceil(NR) * k * NR && c.holds(m, n) && a.holds(m, k),
        "panel32 shapes"
    );
    // Row blocks of near-equal height ≤ MR_MAX: 64 rows are 13+13+13+13+12, not 14·4+8.
    let blocks = m.div_ceil(MR_MAX);
    #[cfg(target_arch = "x86_64")]
    for p in 0..n.div_ceil(NR) {
        let (j0, w) = (p * NR, NR.min(n - p * NR));
        let panel = &b[p * k * NR..];
        let mut i0 = 0;
        for blk in 0..blocks {
            let mr = m / blocks + usize::from(blk < m % blocks);
            // SAFETY: the CPU has AVX-512F (asserted); the assert above bounds rows
            // i0..i0+mr of a and c, columns j0..j0+w of c and the panel's k·32 values.
            unsafe {
                let a = Rows {
                    p: a.data.as_ptr().add(i0 * a.rs),
                    rs: a.rs,
                };
                let c = Rows {
                    p: c.data.as_mut_ptr().add(i0 * c.rs + j0),
                    rs: c.rs,
                };
                avx512::block(mr, k, a, panel.as_ptr(), c, w, accumulate)
            };
            i0 += mr;
        }
    }
}

/// A kernel's view of a matrix: row i starts at `p + i·rs`.
#[derive(Clone, Copy)]
struct Rows<P> {
    p: P,
    rs: usize,
}

/// `f::<mr>(args)` for a run-time `mr` among the listed heights: each height is its own
/// compiled kernel, so every accumulator stays in a register.
#[cfg(target_arch = "x86_64")]
macro_rules! by_height {
    ($mr:expr, $f:ident $args:tt, $($n:literal)*) => {
        match $mr {
            $($n => $f::<$n> $args,)*
            mr => unreachable!("row block of {mr}"),
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Rows, NR};
    use std::arch::x86_64::*;

    /// A block of `mr ≤ 14` rows, on the kernel compiled for that height.
    pub(super) unsafe fn block(
        mr: usize,
        k: usize,
        a: Rows<*const f32>,
        b: *const f32,
        c: Rows<*mut f32>,
        w: usize,
        acc: bool,
    ) {
        by_height!(mr, kernel(k, a, b, c, w, acc), 1 2 3 4 5 6 7 8 9 10 11 12 13 14)
    }

    /// `c[MR, w] (+)= a[MR, k] · panel[k, 32]` (columns past `w` masked off).
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const MR: usize>(
        k: usize,
        Rows { p: a, rs: a_rs }: Rows<*const f32>,
        b: *const f32,
        Rows { p: c, rs: c_rs }: Rows<*mut f32>,
        w: usize,
        accumulate: bool,
    ) {
        let mut lo = [_mm512_setzero_ps(); MR];
        let mut hi = [_mm512_setzero_ps(); MR];
        for p in 0..k {
            let b0 = _mm512_loadu_ps(b.add(p * NR));
            let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
            for i in 0..MR {
                let av = _mm512_set1_ps(*a.add(i * a_rs + p));
                lo[i] = _mm512_fmadd_ps(av, b0, lo[i]);
                hi[i] = _mm512_fmadd_ps(av, b1, hi[i]);
            }
        }
        let mask = |from: usize| -> __mmask16 {
            let n = w.saturating_sub(from).min(16);
            ((1u32 << n) - 1) as __mmask16
        };
        let (m0, m1) = (mask(0), mask(16));
        for i in 0..MR {
            let row = c.add(i * c_rs);
            let (mut v0, mut v1) = (lo[i], hi[i]);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row.add(16)));
            }
            _mm512_mask_storeu_ps(row, m0, v0);
            _mm512_mask_storeu_ps(row.add(16), m1, v1);
        }
    }
    /// Dispatches `mr ≤ 6` rows of one 16-unit group to the fused kernel for that height.
    pub(super) unsafe fn lstm_block(
        mr: usize,
        k: usize,
        u: usize,
        u0: usize,
        panel: *const f32,
        s: &mut super::LstmStep,
        i0: usize,
    ) {
        by_height!(mr, lstm_kernel(k, u, u0, panel, s, i0), 1 2 3 4 5 6)
    }

    /// [`ops::fast_exp`](crate::engine::ops::fast_exp), sixteen lanes, the same operations.
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        const MAGIC: f32 = 12_582_912.0;
        let c = |v: f32| _mm512_set1_ps(v);
        // max(lo, x) and min(hi, ·) return x when it is NaN, as f32::clamp does.
        let x = _mm512_min_ps(c(88.0), _mm512_max_ps(c(-87.3), x));
        let y = _mm512_add_ps(_mm512_mul_ps(x, c(std::f32::consts::LOG2_E)), c(MAGIC));
        let kf = _mm512_sub_ps(y, c(MAGIC));
        let r = _mm512_sub_ps(
            _mm512_sub_ps(x, _mm512_mul_ps(kf, c(0.693_145_75))),
            _mm512_mul_ps(kf, c(1.428_606_8e-6)),
        );
        let mut p = c(1.987_569_1e-4);
        for coef in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            5e-1,
        ] {
            p = _mm512_add_ps(_mm512_mul_ps(p, r), c(coef));
        }
        let e = _mm512_add_ps(
            _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r),
            c(1.0),
        );
        let ki = _mm512_sub_epi32(_mm512_castps_si512(y), _mm512_set1_epi32(0x4B40_0000));
        let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(ki, _mm512_set1_epi32(127)));
        _mm512_mul_ps(e, _mm512_castsi512_ps(bits))
    }

    /// σ(x) = 1 / (1 + e^−x), as `ops::sigmoid`.
    #[inline(always)]
    unsafe fn sigmoid(x: __m512) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        let neg = _mm512_sub_ps(_mm512_setzero_ps(), x);
        _mm512_div_ps(one, _mm512_add_ps(one, exp(neg)))
    }

    /// tanh(x) = 1 − 2 / (e^{2x} + 1), as `ops::tanh`.
    #[inline(always)]
    unsafe fn tanh(x: __m512) -> __m512 {
        let (one, two) = (_mm512_set1_ps(1.0), _mm512_set1_ps(2.0));
        let e = exp(_mm512_mul_ps(two, x));
        _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(e, one)))
    }

    /// Rows `i0..i0+MR`, units `u0..u0+16` (masked past `u`): the four gates' products in
    /// 4·MR registers, then the cell.
    #[target_feature(enable = "avx512f")]
    unsafe fn lstm_kernel<const MR: usize>(
        k: usize,
        u: usize,
        u0: usize,
        panel: *const f32,
        s: &mut super::LstmStep,
        i0: usize,
    ) {
        // The rows of xg come from a table looked up by token (at inference) and miss the
        // caches: asked for now, their 4·MR lines arrive while the product runs.
        for r in i0..i0 + MR {
            if s.active[r] {
                let x = s.xg.as_ptr().add(s.x_off[r] + u0);
                for g in 0..4 {
                    // First and last value: 16 floats may straddle two lines.
                    _mm_prefetch::<_MM_HINT_T0>(x.add(g * u).cast());
                    _mm_prefetch::<_MM_HINT_T0>(x.add(g * u + 15).cast());
                }
            }
        }
        let mut acc = [[_mm512_setzero_ps(); 4]; MR];
        let a = s.h_prev.as_ptr().add(i0 * s.h_rs);
        for p in 0..k {
            let b = [0, 1, 2, 3].map(|g| _mm512_loadu_ps(panel.add(p * 64 + g * 16)));
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i * s.h_rs + p));
                for g in 0..4 {
                    row[g] = _mm512_fmadd_ps(av, b[g], row[g]);
                }
            }
        }
        let mask = ((1u32 << (u - u0).min(16)) - 1) as __mmask16;
        for (i, row) in acc.iter().enumerate() {
            let r = i0 + i;
            let hr = s.h.add(r * s.h_out_rs + u0);
            if !s.active[r] {
                let hp = s.h_prev.as_ptr().add(r * s.h_rs + s.j0 + u0);
                _mm512_mask_storeu_ps(hr, mask, _mm512_maskz_loadu_ps(mask, hp));
                continue;
            }
            let x = s.xg.as_ptr().add(s.x_off[r] + u0);
            let pre = |g: usize| _mm512_add_ps(row[g], _mm512_maskz_loadu_ps(mask, x.add(g * u)));
            let (gi, gf, gg, go) = (
                sigmoid(pre(0)),
                sigmoid(pre(1)),
                tanh(pre(2)),
                sigmoid(pre(3)),
            );
            let cr = s.c.as_mut_ptr().add(r * u + u0);
            let c = _mm512_add_ps(
                _mm512_mul_ps(gf, _mm512_maskz_loadu_ps(mask, cr)),
                _mm512_mul_ps(gi, gg),
            );
            _mm512_mask_storeu_ps(cr, mask, c);
            _mm512_mask_storeu_ps(hr, mask, _mm512_mul_ps(tanh(c), go));
            if !s.gates.is_null() {
                let gr = s.gates.add(r * s.g_rs + u0);
                for (g, v) in [gi, gf, gg, go].into_iter().enumerate() {
                    _mm512_mask_storeu_ps(gr.add(g * u), mask, v);
                }
            }
        }
    }
}

/// Units per LSTM panel: one vector of each gate.
const UNITS: usize = 16;
/// Rows per fused register block: 4·6 accumulators, four panel vectors and a broadcast.
const LSTM_MR_MAX: usize = 6;

/// One thread's share of an LSTM's W_hh, `[K, 4·u]` with columns gate-major (`u` units of
/// i, then f, g, o), packed as `⌈u/16⌉` panels `[K, 64]` that hold 16 units of every gate.
/// A block of the product then ends with all four gates of its units in registers, and
/// the cell's pointwise step runs there ([`lstm_step`]) instead of on a `[B, 4·u]` buffer
/// written by the product and read back by a second pass.
pub struct LstmPanels {
    k: usize,
    u: usize,
    data: Vec<f32>,
}

impl LstmPanels {
    /// From the row-major `[k, 4·u]` matrix.
    pub fn new(w: &[f32], k: usize, u: usize) -> LstmPanels {
        assert!(w.len() >= k * 4 * u, "LstmPanels shape");
        let groups = u.div_ceil(UNITS);
        let mut data = vec![0.0; groups * k * 4 * UNITS];
        for q in 0..groups {
            let (u0, n) = (q * UNITS, UNITS.min(u - q * UNITS));
            for r in 0..k {
                let dst = &mut data[(q * k + r) * 4 * UNITS..][..4 * UNITS];
                for gate in 0..4 {
                    let src = &w[r * 4 * u + gate * u + u0..][..n];
                    dst[gate * UNITS..gate * UNITS + n].copy_from_slice(src);
                }
            }
        }
        LstmPanels { k, u, data }
    }
}

/// Where one fused LSTM step reads and writes, for `m` rows (sequences) and the `u` units
/// `j0..j0+u` that [`LstmPanels`] holds. Rows of different buffers have their own strides;
/// pointers because the gate rows interleave with other threads' units.
pub struct LstmStep<'a> {
    /// h_{t−1} `[m, K]` (every unit: the product's left operand), row stride `h_rs`.
    pub h_prev: &'a [f32],
    pub h_rs: usize,
    /// The input projections: row r's `4·u` gate-major values start at `xg[x_off[r]]`.
    pub xg: &'a [f32],
    pub x_off: &'a [usize],
    /// In c_{t−1}, out c_t, `[m, u]` contiguous.
    pub c: &'a mut [f32],
    /// Out: h_t (h_{t−1}'s units for inactive rows), row r's `u` values at `h + r·h_out_rs`:
    /// straight into the loop's state slot, which other threads' units interleave.
    pub h: *mut f32,
    pub h_out_rs: usize,
    /// Out, unless null: the activated gates, row r's `4·u` gate-major values at
    /// `gates + r·g_rs`.
    pub gates: *mut f32,
    pub g_rs: usize,
    /// False at padding steps: the row's state passes through and its gates are not written.
    pub active: &'a [bool],
    pub j0: usize,
}

/// One LSTM step of `m` rows: gates = xg + h_{t−1}·W_hh, then i, f, o = σ, g = tanh,
/// c_t = f∘c_{t−1} + i∘g, h_t = o∘tanh(c_t), with the arithmetic of `cell::step_forward`
/// (the same operations in the same order, so the results are identical to the unfused
/// product and step). Panics unless [`supported`] and the buffers hold what `s` says.
///
/// # Safety
/// `s.h` must be valid for writes of `u` values at `r·h_out_rs` for every row r < m, and
/// `s.gates`, unless null, must be valid for writes of `4·u` values at `r·g_rs` for every
/// row r < m that is active, and no other thread may access those values meanwhile.
pub unsafe fn lstm_step(w: &LstmPanels, m: usize, mut s: LstmStep) {
    assert!(supported(), "panel32 needs AVX-512F");
    let (k, u) = (w.k, w.u);
    if m == 0 || u == 0 {
        return;
    }
    assert!(
        s.x_off.len() >= m
            && s.active.len() >= m
            && s.c.len() >= m * u
            && s.h_prev.len() > (m - 1) * s.h_rs + (k.max(s.j0 + u)) - 1
            && s.x_off[..m].iter().all(|&o| o + 4 * u <= s.xg.len()),
        "lstm_step shapes"
    );
    let blocks = m.div_ceil(LSTM_MR_MAX);
    #[cfg(target_arch = "x86_64")]
    for q in 0..u.div_ceil(UNITS) {
        let panel = w.data[q * k * 4 * UNITS..].as_ptr();
        let mut i0 = 0;
        for blk in 0..blocks {
            let mr = m / blocks + usize::from(blk < m % blocks);
            avx512::lstm_block(mr, k, u, q * UNITS, panel, &mut s, i0);
            i0 += mr;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_naive_product_for_every_block_height_and_ragged_width() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX-512F (panel32 is not used here)");
            return;
        }
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 33, 7),
            (14, 32, 5),
            (15, 70, 40),
            (64, 600, 150),
            (20, 17, 0),
        ] {
            let (a_rs, c_rs) = (k + 3, n + 5);
            let a: Vec<f32> = (0..m * a_rs)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                .collect();
            let packed = pack(&b, n, k, n);
            for accumulate in [false, true] {
                let mut c: Vec<f32> = (0..m * c_rs).map(|i| i as f32 * 0.01).collect();
                let before = c.clone();
                let out = Out {
                    data: &mut c,
                    rs: c_rs,
                };
                left_mul([m, n, k], out, Strided::rows(&a, a_rs), &packed, accumulate);
                for i in 0..m {
                    for j in 0..c_rs {
                        let got = c[i * c_rs + j];
                        if j >= n {
                            assert_eq!(got, before[i * c_rs + j], "column {j} past n touched");
                            continue;
                        }
                        let dot: f64 = (0..k)
                            .map(|p| a[i * a_rs + p] as f64 * b[p * n + j] as f64)
                            .sum();
                        let want = dot
                            + if accumulate {
                                before[i * c_rs + j] as f64
                            } else {
                                0.0
                            };
                        assert!(
                            (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{m}×{n}×{k} [{i},{j}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn fused_lstm_step_equals_the_product_then_the_cell() {
        use crate::engine::cell::{step_forward, CellKind, StepFwd};
        if !supported() {
            eprintln!("skipped: this CPU has no AVX-512F (the fused LSTM step is not used here)");
            return;
        }
        // (rows, hidden, this thread's first unit and units): whole layers and a thread's
        // share, ragged unit groups, rows that do and do not fill the 6-row blocks.
        for &(m, hid, j0, u) in &[
            (7, 70, 0, 70),
            (13, 150, 75, 75),
            (64, 150, 0, 150),
            (5, 25, 0, 25),
            (1, 33, 16, 17),
        ] {
            let val = |i: usize, s: usize| (((i * s) % 211) as f32 - 105.0) / 60.0;
            let h_rs = hid + 2;
            let h_prev: Vec<f32> = (0..m * h_rs).map(|i| val(i, 37) * 0.5).collect();
            let w: Vec<f32> = (0..hid * 4 * u).map(|i| val(i, 53) * 0.1).collect();
            let g_rs = 4 * u + 3;
            let xg: Vec<f32> = (0..m * g_rs).map(|i| val(i, 71)).collect();
            // Rows in another order than the batch's, as a looked-up table's are.
            let x_off: Vec<usize> = (0..m).map(|r| ((r * 5) % m) * g_rs).collect();
            let active: Vec<bool> = (0..m).map(|r| r % 4 != 3).collect();
            let c0: Vec<f32> = (0..m * u).map(|i| val(i, 29)).collect();

            let (mut c, mut h, mut gates) = (c0.clone(), vec![0.0; m * u], vec![9.0; m * g_rs]);
            let panels = LstmPanels::new(&w, hid, u);
            let step = LstmStep {
                h_prev: &h_prev,
                h_rs,
                xg: &xg,
                x_off: &x_off,
                c: &mut c,
                h: h.as_mut_ptr(),
                h_out_rs: u,
                gates: gates.as_mut_ptr(),
                g_rs,
                active: &active,
                j0,
            };
            // SAFETY: `gates` holds m rows of g_rs ≥ 4·u values.
            unsafe { lstm_step(&panels, m, step) };

            let (mut c_ref, mut h_ref, mut g_ref) =
                (c0.clone(), vec![0.0; m * u], vec![9.0; m * g_rs]);
            for r in 0..m {
                let hg: Vec<f32> = (0..4 * u)
                    .map(|col| {
                        (0..hid).fold(0f32, |acc, p| {
                            h_prev[r * h_rs + p].mul_add(w[p * 4 * u + col], acc)
                        })
                    })
                    .collect();
                let hp = &h_prev[r * h_rs + j0..][..u];
                let mut g_row = g_ref[r * g_rs..][..4 * u].to_vec();
                step_forward(
                    CellKind::Lstm,
                    u,
                    StepFwd {
                        xg: &xg[x_off[r]..][..4 * u],
                        hg: &hg,
                        h_prev: hp,
                        h: &mut h_ref[r * u..(r + 1) * u],
                        c: &mut c_ref[r * u..(r + 1) * u],
                        gates: &mut g_row,
                        hn: &mut [],
                        active: &active[r..r + 1],
                    },
                );
                if active[r] {
                    g_ref[r * g_rs..][..4 * u].copy_from_slice(&g_row);
                }
            }
            // Rows of 64 units or more take step_forward's row path, whose arithmetic the
            // kernel repeats exactly; narrower rows its batch path, whose tanh is 2σ(2x) − 1.
            let tol = if u >= 64 { 0.0 } else { 2e-6 };
            for (what, got, want) in [
                ("c", &c, &c_ref),
                ("h", &h, &h_ref),
                ("gates", &gates, &g_ref),
            ] {
                for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                    assert!(
                        (a - b).abs() <= tol,
                        "{m}×{u} (of {hid}) {what}[{i}]: {a} vs {b}"
                    );
                }
            }
        }
    }
}
