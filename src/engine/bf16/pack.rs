//! Packing operands into bf16 tiles: B once per weight matrix ([`PackedB`]), A per call,
//! both padded to 32 rows, columns and depth.

use super::*;
use std::ops::Range;

/// Rows, columns and depth are padded to this: two 16-row tiles by two 16-column tiles,
/// and one 32-deep tile of k.
pub(super) const TILE: usize = 32;

pub(super) fn round_up(x: usize) -> usize {
    x.div_ceil(TILE) * TILE
}

/// A right operand `[k, n]` in bf16, packed once and multiplied many times (a time loop's
/// recurrent weights). Layout `[n'/16][k'/2][16][2]`.
pub struct PackedB {
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) kp: usize,
    pub(super) data: Buf,
}

/// bf16 values in 64-byte-aligned lines: a tile row that straddles two cache lines
/// costs two loads.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Line(pub(super) [u16; 32]);

#[derive(Default)]
pub(super) struct Buf(pub(super) Vec<Line>);

impl Buf {
    /// Makes it `len` zeros (`len` a multiple of 32), keeping the allocation.
    pub(super) fn reset(&mut self, len: usize) {
        self.0.clear();
        self.resize(len);
    }

    /// Makes it `len` values (a multiple of 32): what it held stays, new values are zeros.
    pub(super) fn resize(&mut self, len: usize) {
        self.0.resize(len / 32, Line([0; 32]));
    }
}

impl std::ops::Deref for Buf {
    type Target = [u16];
    fn deref(&self) -> &[u16] {
        // SAFETY: a Line is 32 u16 with no padding.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr() as *const u16, self.0.len() * 32) }
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u16] {
        // SAFETY: as in deref, and the borrow is unique.
        unsafe {
            std::slice::from_raw_parts_mut(self.0.as_mut_ptr() as *mut u16, self.0.len() * 32)
        }
    }
}

impl PackedB {
    /// From element (p, j) at `b[p·rs + j·cs]`, on one thread.
    pub fn new(k: usize, n: usize, b: &[f32], rs: usize, cs: usize) -> PackedB {
        PackedB::new_on(1, k, n, Strided { data: b, rs, cs }, Buf::default())
    }

    /// As [`PackedB::new`], the passes over k shared among `threads` threads.
    /// `data` is storage to reuse.
    pub(super) fn new_on(threads: usize, k: usize, n: usize, b: Strided, mut data: Buf) -> PackedB {
        let (kp, np) = (round_up(k), round_up(n));
        data.reset(kp * np);
        let pack = |(pass, dst): (usize, &mut [u16])| {
            let k0 = pass * KC;
            pack_b_pass([k, n], b, k0..k0 + KC.min(kp - k0), dst);
        };
        if threads > 1 && kp > KC && k * n >= 1 << 16 {
            use rayon::prelude::*;
            data.par_chunks_mut(KC * np).enumerate().for_each(pack);
        } else {
            data.chunks_mut(KC * np).enumerate().for_each(pack);
        }
        PackedB { k, n, kp, data }
    }

    /// Where the 16-column block of column `j0` starts in the pass over k from `k0`
    /// (a multiple of [`KC`]), and that pass's depth.
    #[inline(always)]
    pub(super) fn block(&self, j0: usize, k0: usize) -> (usize, usize) {
        let kw = KC.min(self.kp - k0);
        (k0 * round_up(self.n) + (j0 / 16) * (kw / 2) * 32, kw)
    }

    /// Where element (p, j) lives.
    pub(super) fn idx(&self, p: usize, j: usize) -> usize {
        let (off, _) = self.block(j, p - p % KC);
        off + ((p % KC) / 2) * 32 + (j % 16) * 2 + p % 2
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }
}

/// Packs rows `pass` (k0..k0+kw) of the right operand `b [k, n]` (zero past `k`) into
/// `dst`, that pass's zeroed `[n'/16][kw/2][16][2]` part of the layout.
pub(super) fn pack_b_pass([k, n]: [usize; 2], b: Strided, pass: Range<usize>, dst: &mut [u16]) {
    let (k0, kw) = (pass.start, pass.len());
    let Strided { data: b, rs, cs } = b;
    #[cfg(target_arch = "x86_64")]
    if has_avx512bf16() && (cs == 1 || rs == 1) {
        // SAFETY: the CPU has the features; the functions read only elements (p, j) with
        // p < k and j < n, which the callers' shapes bound.
        unsafe {
            return if cs == 1 {
                vec512::pack_b_rows(k, k0, kw, n, b, rs, dst)
            } else {
                vec512::pack_b_cols(k, k0, kw, n, b, cs, dst)
            };
        }
    }
    for j in 0..n {
        for p in k0..(k0 + kw).min(k) {
            dst[((j / 16) * (kw / 2) + (p - k0) / 2) * 32 + (j % 16) * 2 + p % 2] =
                to_bf16(b[p * rs + j * cs]);
        }
    }
}

/// Where element (i, p) of the packed left operand lives: tile (i/16, p/32), row i%16.
#[inline(always)]
pub(super) fn a_idx(i: usize, p: usize, kp: usize) -> usize {
    ((i / 16) * (kp / 32) + p / 32) * 512 + (i % 16) * 32 + p % 32
}

/// Packs the left operand `a [m, k]` into `out` in 16×32 tiles (zero padded), for `k` of
/// `kp`, the 16-row strips shared among `threads` threads.
pub(super) fn pack_a(threads: usize, m: usize, k: usize, kp: usize, a: Strided, out: &mut Buf) {
    let Strided { data: a, rs, cs } = a;
    #[cfg(target_arch = "x86_64")]
    let simd = has_avx512bf16() && (cs == 1 || rs == 1);
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    if simd {
        // The vector packers write every element of rows below m, k's padding included;
        // only the padding rows are cleared (zeroing megabytes first cost as much as
        // packing them).
        out.resize(round_up(m) * kp);
        for i in m..round_up(m) {
            for p0 in (0..kp).step_by(32) {
                out[a_idx(i, p0, kp)..][..32].fill(0);
            }
        }
    } else {
        out.reset(round_up(m) * kp);
    }
    let strips = m.div_ceil(16);
    let per = strips.div_ceil(threads.max(1)).max(1);
    let pack = |(c, dst): (usize, &mut [u16])| {
        let i0 = c * per * 16;
        if i0 < m {
            let mm = (m - i0).min(per * 16);
            pack_a_strips(mm, k, kp, &a[i0 * rs..], rs, cs, dst);
        }
    };
    if threads > 1 && m * k >= 1 << 16 {
        use rayon::prelude::*;
        out.par_chunks_mut(per * 16 * kp).enumerate().for_each(pack);
    } else {
        pack_a_strips(m, k, kp, a, rs, cs, out);
    }
}

/// [`pack_a`] for rows `0..m` of `a` into zeroed `out`, which starts at a strip.
pub(super) fn pack_a_strips(
    m: usize,
    k: usize,
    kp: usize,
    a: &[f32],
    rs: usize,
    cs: usize,
    out: &mut [u16],
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512bf16() && (cs == 1 || rs == 1) {
        // SAFETY: the CPU has the features; (i, p) stays inside m × k.
        unsafe {
            return if cs == 1 {
                vec512::pack_a_rows(m, k, kp, a, rs, out)
            } else {
                vec512::pack_a_cols(m, k, kp, a, cs, out)
            };
        }
    }
    for i in 0..m {
        for p in 0..k {
            out[a_idx(i, p, kp)] = to_bf16(a[i * rs + p * cs]);
        }
    }
}
