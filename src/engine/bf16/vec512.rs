//! The packers with AVX-512: `vcvtne2ps2bf16` rounds 32 floats at a time (ties to even,
//! as [`super::to_bf16`]), and masked loads cover the ragged edges.

use std::arch::x86_64::*;

#[inline(always)]
fn mask(rem: usize) -> u16 {
    if rem >= 16 {
        0xffff
    } else {
        ((1u32 << rem) - 1) as u16
    }
}

/// The 32 values `p[0..32]`, those at `rem` and past read as zeros, as 32 bf16.
#[inline(always)]
unsafe fn load32(p: *const f32, rem: usize) -> __m512i {
    let lo = _mm512_maskz_loadu_ps(mask(rem), p);
    let hi = _mm512_maskz_loadu_ps(mask(rem.saturating_sub(16)), p.wrapping_add(16));
    cvt(lo, hi)
}

/// `[lo0..lo15, hi0..hi15]` as 32 bf16.
#[inline(always)]
unsafe fn cvt(lo: __m512, hi: __m512) -> __m512i {
    std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo))
}

/// Interleaves the halves: `[lo0, hi0, lo1, hi1, …]` (the k-pairs of 16 columns).
#[inline(always)]
unsafe fn zip(v: __m512i) -> __m512i {
    let idx = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
        19, 3, 18, 2, 17, 1, 16, 0,
    );
    _mm512_permutexvar_epi16(idx, v)
}

/// Right operand stored by rows (`b[p·rs + j]`): two rows, 16 columns, one store.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn pack_b_rows(
    k: usize,
    k0: usize,
    kw: usize,
    n: usize,
    b: &[f32],
    rs: usize,
    dst: &mut [u16],
) {
    let bp = b.as_ptr();
    let pairs = (kw / 2).min((k - k0).div_ceil(2));
    // 32 rows at a time, each read along its length: a column-first walk would touch
    // a new page with every load once rows are a few KB long.
    for q0 in (0..pairs).step_by(16) {
        for jb in (0..n).step_by(16) {
            let m = mask(n - jb);
            for q in q0..(q0 + 16).min(pairs) {
                let p = k0 + 2 * q;
                let lo = _mm512_maskz_loadu_ps(m, bp.add(p * rs + jb));
                let hi = if p + 1 < k {
                    _mm512_maskz_loadu_ps(m, bp.add((p + 1) * rs + jb))
                } else {
                    _mm512_setzero_ps()
                };
                let d = dst.as_mut_ptr().add(((jb / 16) * (kw / 2) + q) * 32);
                _mm512_storeu_si512(d as *mut _, zip(cvt(lo, hi)));
            }
        }
    }
}

/// Transposes a 16×16 matrix of u32 held in 16 rows (32-bit, then 64-bit interleaves
/// within 128-bit lanes, then two rounds of lane shuffles).
#[inline(always)]
unsafe fn transpose16(r: &mut [__m512i; 16]) {
    let mut a = [_mm512_setzero_si512(); 16];
    for k in 0..8 {
        a[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        a[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    // b[4k + c], lane L: rows 4k..4k+4 of column 4L + c.
    let mut b = [_mm512_setzero_si512(); 16];
    for k in 0..4 {
        b[4 * k] = _mm512_unpacklo_epi64(a[4 * k], a[4 * k + 2]);
        b[4 * k + 1] = _mm512_unpackhi_epi64(a[4 * k], a[4 * k + 2]);
        b[4 * k + 2] = _mm512_unpacklo_epi64(a[4 * k + 1], a[4 * k + 3]);
        b[4 * k + 3] = _mm512_unpackhi_epi64(a[4 * k + 1], a[4 * k + 3]);
    }
    for c in 0..4 {
        let p0 = _mm512_shuffle_i32x4::<0x44>(b[c], b[4 + c]);
        let p1 = _mm512_shuffle_i32x4::<0xEE>(b[c], b[4 + c]);
        let q0 = _mm512_shuffle_i32x4::<0x44>(b[8 + c], b[12 + c]);
        let q1 = _mm512_shuffle_i32x4::<0xEE>(b[8 + c], b[12 + c]);
        r[c] = _mm512_shuffle_i32x4::<0x88>(p0, q0);
        r[4 + c] = _mm512_shuffle_i32x4::<0xDD>(p0, q0);
        r[8 + c] = _mm512_shuffle_i32x4::<0x88>(p1, q1);
        r[12 + c] = _mm512_shuffle_i32x4::<0xDD>(p1, q1);
    }
}

/// Right operand stored by columns (`b[p + j·cs]`): a column's k-pairs are adjacent
/// already; 16 columns × 16 pairs are rounded, transposed and stored as 16 rows of
/// pairs.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn pack_b_cols(
    k: usize,
    k0: usize,
    kw: usize,
    n: usize,
    b: &[f32],
    cs: usize,
    dst: &mut [u16],
) {
    for jb in (0..n).step_by(16) {
        for p0 in (k0..(k0 + kw).min(k)).step_by(32) {
            let mut r = [_mm512_setzero_si512(); 16];
            for (jj, r) in r.iter_mut().enumerate().take(n - jb) {
                *r = load32(b.as_ptr().add((jb + jj) * cs + p0), k - p0);
            }
            transpose16(&mut r);
            let d = dst
                .as_mut_ptr()
                .add(((jb / 16) * (kw / 2) + (p0 - k0) / 2) * 32);
            for (q, r) in r.iter().enumerate() {
                _mm512_storeu_si512(d.add(q * 32) as *mut _, *r);
            }
        }
    }
}

/// Left operand stored by rows (`a[i·rs + p]`): 32 of k per store.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn pack_a_rows(
    m: usize,
    k: usize,
    kp: usize,
    a: &[f32],
    rs: usize,
    out: &mut [u16],
) {
    for i in 0..m {
        let row = a.as_ptr().add(i * rs);
        for p0 in (0..k).step_by(32) {
            let d = out.as_mut_ptr().add(super::a_idx(i, p0, kp));
            _mm512_storeu_si512(d as *mut _, load32(row.add(p0), k - p0));
        }
    }
}

/// Left operand stored by columns (`a[i + p·cs]`): two of k for 16 rows zipped into
/// 16 pairs, 16 such, transposed into the 16 rows of a tile.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn pack_a_cols(
    m: usize,
    k: usize,
    kp: usize,
    a: &[f32],
    cs: usize,
    out: &mut [u16],
) {
    // 32 rows of `a` at a time, each read along its length (as in `pack_b_rows`).
    for p0 in (0..k).step_by(32) {
        for i0 in (0..m).step_by(16) {
            let mk = mask(m - i0);
            let mut r = [_mm512_setzero_si512(); 16];
            for (q, r) in r.iter_mut().enumerate().take((k - p0).div_ceil(2)) {
                let p = p0 + 2 * q;
                let lo = _mm512_maskz_loadu_ps(mk, a.as_ptr().add(p * cs + i0));
                let hi = if p + 1 < k {
                    _mm512_maskz_loadu_ps(mk, a.as_ptr().add((p + 1) * cs + i0))
                } else {
                    _mm512_setzero_ps()
                };
                *r = zip(cvt(lo, hi));
            }
            transpose16(&mut r);
            let d = out.as_mut_ptr().add(super::a_idx(i0, p0, kp));
            for (i, r) in r.iter().enumerate() {
                _mm512_storeu_si512(d.add(i * 32) as *mut _, *r);
            }
        }
    }
}
