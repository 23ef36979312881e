//! The AVX512-BF16 kernel: 32×32 blocks of c with `vdpbf16ps` (AMD Zen 4, Intel Cooper
//! Lake).

use super::{Job, PackedB};
use std::arch::x86_64::*;

/// `out[r] = w[r, :k] · x` for bf16 rows: 32 products per instruction, four rows at a
/// time sharing each load of x; the ragged end of a row through a masked load.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn matvec_rows(out: &mut [f32], w: &[u16], x: &[u16], k: usize) {
    let load = |p: *const u16, rem: usize| -> __m512bh {
        let m = if rem >= 32 {
            u32::MAX
        } else {
            (1u32 << rem) - 1
        };
        std::mem::transmute(_mm512_maskz_loadu_epi16(m, p as *const _))
    };
    let mut r = 0;
    while r < out.len() {
        let rows = (out.len() - r).min(4);
        let mut acc = [_mm512_setzero_ps(); 4];
        for p0 in (0..k).step_by(32) {
            let xv = load(x.as_ptr().add(p0), 32);
            for (q, acc) in acc.iter_mut().enumerate().take(rows) {
                let wv = load(w.as_ptr().add((r + q) * k + p0), k - p0);
                *acc = _mm512_dpbf16_ps(*acc, wv, xv);
            }
        }
        for (q, acc) in acc.iter().enumerate().take(rows) {
            out[r + q] = _mm512_reduce_add_ps(*acc);
        }
        r += rows;
    }
}

/// One block in 8×32 register blocks: 16 accumulators, two 16-column vectors of
/// k-pairs from the right operand, and one broadcast k-pair per left row, per pair of k.
///
/// # Safety
/// The CPU has AVX512-BF16; the job lies inside the packed operands, and its `src` and
/// `dst` are valid 32×32 blocks.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn block(a: &[u16], b: &PackedB, j: Job) {
    let kp = b.kp;
    let (off, kw) = b.block(j.j0, j.k0);
    let b0 = b.data.as_ptr().add(off);
    let b1 = b0.add((kw / 2) * 32);
    for r0 in (0..j.rows).step_by(8) {
        let mut acc = [[_mm512_setzero_ps(); 2]; 8];
        if let Some((src, rs)) = j.src {
            for (r, acc) in acc.iter_mut().enumerate() {
                let p = src.add((r0 + r) * rs);
                *acc = [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))];
            }
        }
        // Rows i0+r0.. of one 16-row tile strip: pair q of row r at u32 index
        // (q/16)·256 + r·16 + q%16 past the strip's first tile.
        let arow = a.as_ptr().add(super::a_idx(j.i0 + r0, 0, kp)) as *const u32;
        for q in j.k0 / 2..j.k1 / 2 {
            let qb = (q - j.k0 / 2) * 32;
            let v0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b0.add(qb) as *const _));
            let v1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b1.add(qb) as *const _));
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = arow.add((q / 16) * 256 + r * 16 + q % 16).read_unaligned();
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair as i32));
                acc[0] = _mm512_dpbf16_ps(acc[0], av, v0);
                acc[1] = _mm512_dpbf16_ps(acc[1], av, v1);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let p = j.dst.0.add((r0 + r) * j.dst.1);
            _mm512_storeu_ps(p, acc[0]);
            _mm512_storeu_ps(p.add(16), acc[1]);
        }
    }
}
