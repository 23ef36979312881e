//! bf16 mixed precision for the matrix products (`--precision bf16`).
//!
//! What PyTorch's `torch.autocast("cpu", dtype=torch.bfloat16)` does for a matmul, done
//! here for every product rnnkit issues: the fp32 operands are rounded to bf16 (nearest,
//! ties to even) as they are packed, products accumulate in fp32, and the result lands in
//! the fp32 output. Weights, optimizer state, the cell's pointwise math, norms and the loss
//! stay fp32. No crate offers bf16 products, so the kernels are written here:
//!
//! - **AMX-BF16** (Intel Sapphire Rapids and later): `tdpbf16ps` multiplies a 16×32 bf16
//!   tile by a 32×16 one into a 16×16 fp32 tile — 8,192 multiply-adds per instruction.
//!   Stable Rust has no AMX intrinsics, so the kernel is inline `asm!`; Linux hands out the
//!   tile registers only after `arch_prctl(ARCH_REQ_XCOMP_PERM)`, and the tile
//!   configuration is per thread.
//! - **AVX512-BF16** (AMD Zen 4, Intel Cooper Lake and later): `vdpbf16ps`, 32
//!   multiply-adds per instruction, twice an fp32 FMA.
//! - **fp32** where neither exists: the products stay fp32 (the option is then a no-op,
//!   and `rnnkit bench` says so).
//!
//! Both bf16 kernels read the same packed operands: the left one in 16×32 tiles
//! `[m'/16][k'/32][16][32]` (each tile 1 KB and contiguous: a row-major left operand with a
//! power-of-two k would put a tile's 16 rows into one cache set)
//! and the right one, pass by pass over k (see `run`), in 16-column blocks of k-pairs
//! `[k'/KC][n'/16][KC/2][16][2]` (the "VNNI" order both instructions want), with m' and n' rounded up to 32 and k' to 32, zero padded.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The number format of the matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    /// As written on the command line and in run configs.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Precision> {
        match s {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(crate::error::Error::config(format!(
                "{s:?}: expected f32 or bf16"
            ))),
        }
    }
}

/// A bf16 kernel, or fp32 when the CPU has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Amx,
    Avx512Bf16,
    F32,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Amx => "amx-bf16",
            Path::Avx512Bf16 => "avx512-bf16",
            Path::F32 => "fp32",
        }
    }

    /// Whether this CPU (and OS) can run the path.
    pub fn available(self) -> bool {
        match self {
            Path::Amx => has_amx(),
            Path::Avx512Bf16 => has_avx512bf16(),
            Path::F32 => true,
        }
    }
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the precision of every product issued after it (process-wide, like the thread
/// count: set once before training).
pub fn set_precision(p: Precision) {
    PRECISION.store(p as u8, Ordering::Relaxed);
}

pub fn precision() -> Precision {
    match PRECISION.load(Ordering::Relaxed) {
        0 => Precision::F32,
        _ => Precision::Bf16,
    }
}

/// The best bf16 path of this CPU: AMX, else AVX512-BF16, else fp32. The environment
/// variable `RNNKIT_BF16_KERNEL=avx512` skips AMX, to measure the AVX512-BF16 path on a
/// CPU that has both (as a Zen 4 would run it).
pub fn best_path() -> Path {
    static BEST: OnceLock<Path> = OnceLock::new();
    *BEST.get_or_init(|| {
        let skip_amx = std::env::var("RNNKIT_BF16_KERNEL").is_ok_and(|v| v == "avx512");
        if has_amx() && !skip_amx {
            Path::Amx
        } else if has_avx512bf16() {
            Path::Avx512Bf16
        } else {
            Path::F32
        }
    })
}

/// The path products take now: [`best_path`] under bf16, else fp32.
pub fn active_path() -> Path {
    match precision() {
        Precision::F32 => Path::F32,
        Precision::Bf16 => best_path(),
    }
}

fn has_avx512bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AMX-BF16 and AMX-TILE in CPUID leaf 7, the tile state enabled in XCR0 (bits 17 and 18),
/// and Linux's permission to use the tile data, requested once for the whole process.
fn has_amx() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            use std::arch::x86_64::{__cpuid, __cpuid_count};
            // Leaf 7 is read only if the CPU reports it.
            let want = 1 << 22 | 1 << 24;
            let leaf7 = __cpuid(0).eax >= 7 && __cpuid_count(7, 0).edx & want == want;
            if !leaf7 || !is_x86_feature_detected!("xsave") {
                return false;
            }
            // SAFETY: XGETBV is available when the CPU has XSAVE (checked above) and the
            // OS enabled it (OSXSAVE, which is_x86_feature_detected's xsave implies).
            let xcr0 = unsafe { xgetbv0() };
            if xcr0 & (3 << 17) != 3 << 17 {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: a plain system call with integer arguments.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                )
            };
            r == 0
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        {
            false
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    std::arch::x86_64::_xgetbv(0)
}

/// fp32 → bf16, round to nearest, ties to even (as `vcvtne2ps2bf16` and PyTorch do);
/// a NaN stays a (quiet) NaN instead of rounding into an infinity.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    let r = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        0x7fc0 | (b >> 16) as u16
    } else {
        r
    }
}

#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Rows, columns and depth are padded to this: two 16-row tiles by two 16-column tiles,
/// and one 32-deep tile of k.
const TILE: usize = 32;

fn round_up(x: usize) -> usize {
    x.div_ceil(TILE) * TILE
}

/// A right operand `[k, n]` in bf16, packed once and multiplied many times (a time loop's
/// recurrent weights). Layout `[n'/16][k'/2][16][2]`.
pub struct PackedB {
    k: usize,
    n: usize,
    kp: usize,
    data: Buf,
}

/// bf16 values in 64-byte-aligned lines: a tile row that straddles two cache lines
/// costs two loads.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

#[derive(Default)]
struct Buf(Vec<Line>);

impl Buf {
    /// Makes it `len` zeros (`len` a multiple of 32), keeping the allocation.
    fn reset(&mut self, len: usize) {
        self.0.clear();
        self.resize(len);
    }

    /// Makes it `len` values (a multiple of 32): what it held stays, new values are zeros.
    fn resize(&mut self, len: usize) {
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
        PackedB::new_on(1, k, n, b, rs, cs, Buf::default())
    }

    /// As [`PackedB::new`], the passes over k shared among `threads` threads.
    /// `data` is storage to reuse.
    fn new_on(
        threads: usize,
        k: usize,
        n: usize,
        b: &[f32],
        rs: usize,
        cs: usize,
        mut data: Buf,
    ) -> PackedB {
        let (kp, np) = (round_up(k), round_up(n));
        data.reset(kp * np);
        let pack = |(pass, dst): (usize, &mut [u16])| {
            let k0 = pass * KC;
            pack_b_pass(k, k0, KC.min(kp - k0), n, b, rs, cs, dst);
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
    fn block(&self, j0: usize, k0: usize) -> (usize, usize) {
        let kw = KC.min(self.kp - k0);
        (k0 * round_up(self.n) + (j0 / 16) * (kw / 2) * 32, kw)
    }

    /// Where element (p, j) lives.
    fn idx(&self, p: usize, j: usize) -> usize {
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

/// Packs rows `k0..k0+kw` of the right operand (element (p, j) at `b[p·rs + j·cs]`,
/// zero past `k`) into `dst`, that pass's zeroed `[n'/16][kw/2][16][2]` part of the layout.
#[allow(clippy::too_many_arguments)]
fn pack_b_pass(
    k: usize,
    k0: usize,
    kw: usize,
    n: usize,
    b: &[f32],
    rs: usize,
    cs: usize,
    dst: &mut [u16],
) {
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
fn a_idx(i: usize, p: usize, kp: usize) -> usize {
    ((i / 16) * (kp / 32) + p / 32) * 512 + (i % 16) * 32 + p % 32
}

/// Packs element (i, p) of a left operand, at `a[i·rs + p·cs]`, into `out` in 16×32 tiles
/// (zero padded), for `k` of `kp`, the 16-row strips shared among `threads` threads.
#[allow(clippy::too_many_arguments)]
fn pack_a(
    threads: usize,
    m: usize,
    k: usize,
    kp: usize,
    a: &[f32],
    rs: usize,
    cs: usize,
    out: &mut Buf,
) {
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
fn pack_a_strips(m: usize, k: usize, kp: usize, a: &[f32], rs: usize, cs: usize, out: &mut [u16]) {
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

/// The packers with AVX-512: `vcvtne2ps2bf16` rounds 32 floats at a time (ties to even,
/// as [`to_bf16`]), and masked loads cover the ragged edges.
#[cfg(target_arch = "x86_64")]
mod vec512 {
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
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20,
            4, 19, 3, 18, 2, 17, 1, 16, 0,
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
}

thread_local! {
    /// Each thread's packed left operand, reused from call to call (a time loop packs
    /// its `[B, H]` state at every step).
    static A_BUF: RefCell<Buf> = const { RefCell::new(Buf(Vec::new())) };
    /// Storage for [`matmul`]'s two packed operands.
    static PACKED: RefCell<(Buf, Buf)> = const { RefCell::new((Buf(Vec::new()), Buf(Vec::new()))) };
    /// Whether this thread has loaded the tile configuration.
    static TILES_READY: Cell<bool> = const { Cell::new(false) };
}

/// What a product's result starts from.
#[derive(Clone, Copy)]
pub enum Start<'a> {
    Zero,
    /// c's own values (accumulate).
    C,
    /// The same `[n]` vector on every row (a layer's bias): the kernels load it into their
    /// tiles as the sum's start, which saves a pass over c to fill or add it.
    Rows(&'a [f32]),
}

impl Start<'_> {
    pub fn accumulating(accumulate: bool) -> Start<'static> {
        if accumulate {
            Start::C
        } else {
            Start::Zero
        }
    }
}

/// `c[m, n]` (row stride `c_rs`) (+)= a · b, with a's element (i, p) at `a[i·a_rs + p·a_cs]`
/// and `b` packed, on one thread, through `path` (which must be available).
#[allow(clippy::too_many_arguments)]
pub fn left_mul_packed(
    path: Path,
    m: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &PackedB,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
) {
    let (n, k) = (b.n, b.k);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        path.available(),
        "{} is not available on this CPU",
        path.name()
    );
    assert!(
        (m - 1) * c_rs + n <= c.len() && (k == 0 || (m - 1) * a_rs + (k - 1) * a_cs < a.len()),
        "bf16 product shapes"
    );
    A_BUF.with_borrow_mut(|buf| {
        pack_a(1, m, k, b.kp, a, a_rs, a_cs, buf);
        // SAFETY: the assert above bounds every element of c the kernel writes.
        unsafe {
            run(
                path,
                m,
                0..round_up(m),
                0..round_up(n),
                buf,
                b,
                c.as_mut_ptr(),
                c_rs,
                n,
                Start::accumulating(accumulate),
            )
        }
    });
}

/// `c[m, n]` = start + op(a) · op(b) in bf16 on `threads` threads, with the strides of
/// `ops::matmul`. Both operands are packed once, then the product runs as
/// [`matmul_packed`].
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    path: Path,
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    a: &[f32],
    a_st: (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    start: Start,
) {
    if m == 0 || n == 0 {
        return;
    }
    // The kernels read a row start 32 columns at a time.
    let padded: Vec<f32>;
    let start = match start {
        Start::Rows(r) => {
            assert_eq!(r.len(), n, "bf16 start row");
            padded = r
                .iter()
                .copied()
                .chain(std::iter::repeat(0.0))
                .take(round_up(n))
                .collect();
            Start::Rows(&padded)
        }
        s => s,
    };
    // The packed operands' storage is the thread's, reused from call to call: fresh
    // megabytes would cost a page fault every 4 KB.
    let (pa, pb_buf) = PACKED.with_borrow_mut(std::mem::take);
    let pb = PackedB::new_on(threads, k, n, b, b_rs, b_cs, pb_buf);
    let pa = matmul_packed_with(path, threads, m, c, a, a_st, &pb, start, pa);
    PACKED.set((pa, pb.data));
}

/// `c[m, n]` (+)= op(a) · b with b packed beforehand (a weight that many products share,
/// such as decoding's output layer at every step), on `threads` threads.
#[allow(clippy::too_many_arguments)]
pub fn matmul_packed(
    path: Path,
    threads: usize,
    m: usize,
    c: &mut [f32],
    a: &[f32],
    a_st: (usize, usize),
    b: &PackedB,
    accumulate: bool,
) {
    let pa = PACKED.with_borrow_mut(|(pa, _)| std::mem::take(pa));
    let pa = matmul_packed_with(
        path,
        threads,
        m,
        c,
        a,
        a_st,
        b,
        Start::accumulating(accumulate),
        pa,
    );
    PACKED.with_borrow_mut(|(slot, _)| *slot = pa);
}

/// [`matmul_packed`] with `pa` as the storage of the packed left operand, returned for
/// reuse. The 32×32 blocks of c are split among the threads along c's longer side.
#[allow(clippy::too_many_arguments)]
fn matmul_packed_with(
    path: Path,
    threads: usize,
    m: usize,
    c: &mut [f32],
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    pb: &PackedB,
    start: Start,
    mut pa: Buf,
) -> Buf {
    let (n, k) = (pb.n, pb.k);
    if m == 0 || n == 0 {
        return pa;
    }
    assert!(
        path.available(),
        "{} is not available on this CPU",
        path.name()
    );
    assert!(
        (m - 1) * n + n <= c.len() && (k == 0 || (m - 1) * a_rs + (k - 1) * a_cs < a.len()),
        "bf16 product shapes"
    );
    pack_a(threads, m, k, pb.kp, a, a_rs, a_cs, &mut pa);
    let (mp, np) = (round_up(m), round_up(n));
    let split_m = mp >= np;
    let blocks = if split_m { mp } else { np } / TILE;
    let t = threads.clamp(1, blocks);
    let per = blocks.div_ceil(t) * TILE;
    let cp = c.as_mut_ptr() as usize;
    let pa_ref = &pa;
    let part = |p: usize| {
        let (lo, hi) = (p * per, ((p + 1) * per).min(if split_m { mp } else { np }));
        if lo >= hi {
            return;
        }
        let (rows, cols) = if split_m {
            (lo..hi, 0..np)
        } else {
            (0..mp, lo..hi)
        };
        // SAFETY: part p writes only its own rows (or columns) of c, inside m × n, which
        // the assert above bounds.
        unsafe { run(path, m, rows, cols, pa_ref, pb, cp as *mut f32, n, n, start) }
    };
    if t == 1 {
        part(0);
    } else {
        use rayon::prelude::*;
        (0..t).into_par_iter().for_each(part);
    }
    pa
}

/// Runs the kernel over the 32×32 blocks of c in `rows` × `cols` (multiples of 32),
/// clipping its writes to `m` rows and `n` columns.
///
/// The order of the blocks, shared by every kernel: columns in panels of [`NC`], rows in
/// groups of [`MC`], k in passes of [`KC`] over a panel's group, and within a pass each strip of the left operand (32
/// rows × KC, 16 KB, in L1) serves every column block of the panel (KC × NC of the right
/// operand, 128 KB, in L2) before the next strip is loaded. Partial sums wait between
/// passes in a per-thread buffer of contiguous 4 KB blocks: kept in c, whose rows lie a
/// power of two apart in the common shapes, they would all fall into one cache set.
///
/// # Safety
/// `c` must be valid for writes at `i·c_rs + j` for every i < m, j < n in the ranges.
#[allow(clippy::too_many_arguments)]
unsafe fn run(
    path: Path,
    m: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    a: &[u16],
    b: &PackedB,
    c: *mut f32,
    c_rs: usize,
    n: usize,
    start: Start,
) {
    let kp = b.kp;
    // Strips and column blocks as start + index·32: `run` is called at every step of a
    // time loop, which should not allocate.
    let rows = rows.start..rows.end.min(round_up(m));
    let strips = (rows.end.saturating_sub(rows.start)).div_ceil(TILE);
    C_BUF.with_borrow_mut(|cbuf| {
        for jc in cols.clone().step_by(NC).filter(|&j| j < n) {
            let blocks = ((jc + NC).min(cols.end).min(round_up(n)) - jc).div_ceil(TILE);
            for g0 in (0..strips).step_by(MC / TILE) {
                let group = (strips - g0).min(MC / TILE);
                let need = group * blocks;
                let at = |q: usize| {
                    (
                        rows.start + (g0 + q / blocks) * TILE,
                        jc + (q % blocks) * TILE,
                    )
                };
                if cbuf.len() < need {
                    cbuf.resize(need, CBlock([0.0; TILE * TILE]));
                }
                let cbuf = &mut cbuf[..need];
                // A block inside m × n starts from c (when accumulating) and ends in c;
                // only its partial sums between passes, and the clipped edge blocks,
                // go through the buffer (a copy cost as much as a pass of the kernel).
                let whole = |i0: usize, j0: usize| i0 + TILE <= m && j0 + TILE <= n;
                for k0 in (0..kp).step_by(KC) {
                    let k1 = (k0 + KC).min(kp);
                    let job = |q: usize, cb: &mut CBlock| {
                        let (i0, j0) = at(q);
                        let at_c = (c.add(i0 * c_rs + j0), c_rs);
                        let buf = (cb.0.as_mut_ptr(), TILE);
                        let src = match (k0 == 0, start) {
                            (false, _) => Some((buf.0 as *const f32, TILE)),
                            (true, Start::Zero) => None,
                            (true, Start::C) if whole(i0, j0) => Some((at_c.0 as *const f32, c_rs)),
                            // An edge block is added to c at the end.
                            (true, Start::C) => None,
                            // Stride 0: the row start, repeated down the block.
                            (true, Start::Rows(r)) => Some((r[j0..].as_ptr(), 0)),
                        };
                        let dst = if k1 == kp && whole(i0, j0) { at_c } else { buf };
                        Job {
                            i0,
                            j0,
                            rows: (m - i0).min(TILE),
                            k0,
                            k1,
                            src,
                            dst,
                        }
                    };
                    match path {
                        #[cfg(target_arch = "x86_64")]
                        Path::Amx => {
                            amx::configure();
                            for (q, cb) in cbuf.iter_mut().enumerate() {
                                amx::block(a, b, job(q, cb));
                            }
                        }
                        #[cfg(target_arch = "x86_64")]
                        Path::Avx512Bf16 => {
                            for (q, cb) in cbuf.iter_mut().enumerate() {
                                avx512::block(a, b, job(q, cb));
                            }
                        }
                        _ => {
                            for (q, cb) in cbuf.iter_mut().enumerate() {
                                reference_block(a, b, job(q, cb));
                            }
                        }
                    }
                }
                for (q, cb) in cbuf.iter().enumerate() {
                    let (i0, j0) = at(q);
                    if !whole(i0, j0) {
                        store_block(cb, i0, j0, m, n, c, c_rs, matches!(start, Start::C));
                    }
                }
            }
        }
    });
}

/// A 32×32 fp32 block of partial sums, row-major, one 4 KB aligned piece.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct CBlock([f32; TILE * TILE]);

thread_local! {
    /// Each thread's partial sums of one column panel, reused from call to call.
    static C_BUF: RefCell<Vec<CBlock>> = const { RefCell::new(Vec::new()) };
}

/// One 32×32 block of c at (i0, j0) and the part `k0..k1` of its sum: `src + a·b` goes to
/// `dst`, both 32×32 fp32 blocks given as (first element, row stride).
#[derive(Clone, Copy)]
struct Job {
    i0: usize,
    j0: usize,
    /// The block's rows inside m (1..=32): a kernel may skip the rows past them, which are
    /// padding (a batch of 20 fills 20 of 32 rows, so the per-step products of a
    /// zaremba-medium step would spend 37% of their work on zeros).
    rows: usize,
    k0: usize,
    k1: usize,
    /// Where the sum so far is (`None`: zero).
    src: Option<(*const f32, usize)>,
    dst: (*mut f32, usize),
}

/// Depth of one pass over k: a 32-row strip of the left operand is 32 KB.
const KC: usize = 512;
/// Columns of one panel: the right operand's part for one pass is 256 KB.
const NC: usize = 256;
/// Rows whose partial sums wait together between passes (256 KB of them).
const MC: usize = 256;

/// Adds (or writes) a 32×32 block into c at (i0, j0), clipped to m × n.
///
/// # Safety
/// As for [`run`].
#[allow(clippy::too_many_arguments)]
unsafe fn store_block(
    blk: &CBlock,
    i0: usize,
    j0: usize,
    m: usize,
    n: usize,
    c: *mut f32,
    c_rs: usize,
    accumulate: bool,
) {
    let (ri, cj) = ((m - i0).min(TILE), (n - j0).min(TILE));
    for r in 0..ri {
        let dst = std::slice::from_raw_parts_mut(c.add((i0 + r) * c_rs + j0), cj);
        let src = &blk.0[r * TILE..r * TILE + cj];
        if accumulate {
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

/// The packed product in plain Rust (fp32 arithmetic on the bf16 values): what the tests
/// compare the kernels with, and what runs if a path is asked for off x86-64.
///
/// # Safety
/// The job's `src` and `dst` are valid 32×32 blocks.
unsafe fn reference_block(a: &[u16], b: &PackedB, j: Job) {
    let kp = b.kp;
    for r in 0..TILE {
        for q in 0..TILE {
            let col = j.j0 + q;
            let mut s = j.src.map_or(0.0, |(p, rs)| *p.add(r * rs + q));
            for p in j.k0..j.k1 {
                s += from_bf16(a[a_idx(j.i0 + r, p, kp)]) * from_bf16(b.data[b.idx(p, col)]);
            }
            *j.dst.0.add(r * j.dst.1 + q) = s;
        }
    }
}

/// Rounds a row-major matrix to bf16 for [`matvec`] (`None` when the CPU lacks
/// AVX512-BF16, or under fp32): batch-1 decoding streams every weight once per token, so
/// half the bytes is up to twice the speed.
pub fn weights_for_matvec(w: &[f32]) -> Option<Vec<u16>> {
    (active_path() != Path::F32 && has_avx512bf16())
        .then(|| w.iter().map(|&v| to_bf16(v)).collect())
}

/// `out[n] = w[n, k] · x[k]` with `w` from [`weights_for_matvec`] and x rounded to bf16,
/// fp32 sums; rows split over `t` threads when large, as `ops::matvec` does.
pub fn matvec(out: &mut [f32], w: &[u16], x: &[f32], t: usize) {
    use rayon::prelude::*;
    let (n, k) = (out.len(), x.len());
    assert!(w.len() >= n * k && has_avx512bf16(), "bf16 matvec");
    let mut xb: Vec<u16> = x.iter().map(|&v| to_bf16(v)).collect();
    xb.resize(k.div_ceil(32) * 32, 0);
    let rows = |out: &mut [f32], r0: usize| {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX512-BF16 (asserted); rows r0.. of w exist (asserted).
        unsafe {
            avx512::matvec_rows(out, &w[r0 * k..], &xb, k)
        }
    };
    if t > 1 && n * k >= 1 << 16 {
        let per = n.div_ceil(t).div_ceil(8) * 8;
        out.par_chunks_mut(per)
            .enumerate()
            .for_each(|(c, o)| rows(o, c * per));
    } else {
        rows(out, 0);
    }
}

#[cfg(target_arch = "x86_64")]
mod amx {
    use super::{Job, PackedB, TILE, TILES_READY};
    use std::arch::asm;

    /// The tile configuration (palette 1): tmm0–tmm7 all 16 rows of 64 bytes — 16×16 fp32
    /// for the results, 16×32 bf16 for the left operand, 16 k-pairs × 16 columns for the
    /// right one.
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    const CONFIG: TileConfig = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
        rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
    };

    /// Loads the configuration once per thread. Nothing else in the process touches the
    /// tiles, so it stays loaded.
    ///
    /// # Safety
    /// The CPU has AMX and the process has the tile permission ([`super::has_amx`]).
    pub(super) unsafe fn configure() {
        if !TILES_READY.get() {
            asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
            TILES_READY.set(true);
        }
    }

    /// One block as 2×2 result tiles (tmm0–3), the left operand's two 16-row tiles in
    /// tmm4–5, the right operand's two 16-column tiles in tmm6–7, 32 of k per step.
    ///
    /// # Safety
    /// [`configure`] ran on this thread; the job lies inside the packed operands, and its
    /// `src` and `dst` are valid 32×32 blocks.
    pub(super) unsafe fn block(a: &[u16], b: &PackedB, j: Job) {
        let kp = b.kp;
        if let Some((cp, rs)) = j.src {
            asm!(
                "tileloadd tmm0, [{c0} + {sc}*1]",
                "tileloadd tmm1, [{c1} + {sc}*1]",
                "tileloadd tmm2, [{c2} + {sc}*1]",
                "tileloadd tmm3, [{c3} + {sc}*1]",
                c0 = in(reg) cp, c1 = in(reg) cp.add(16), c2 = in(reg) cp.add(16 * rs),
                c3 = in(reg) cp.add(16 * rs + 16), sc = in(reg) rs * 4,
                options(nostack, readonly)
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
        }
        let (off, kw) = b.block(j.j0, j.k0);
        let b0 = b.data.as_ptr().add(off);
        let b1 = b0.add((kw / 2) * 32);
        // The left tiles of rows i0.. and i0+16.., 32 of k after 32 of k, contiguous.
        let a0 = a.as_ptr().add(j.i0 * kp);
        let a1 = a0.add(16 * kp);
        for kc in (j.k0..j.k1).step_by(TILE) {
            asm!(
                "tileloadd tmm4, [{a0} + {s}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {s}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a0.add(kc * 16),
                a1 = in(reg) a1.add(kc * 16),
                b0 = in(reg) b0.add((kc - j.k0) / 2 * 32),
                b1 = in(reg) b1.add((kc - j.k0) / 2 * 32),
                s = in(reg) 64usize,
                options(nostack, readonly)
            );
        }
        let (cp, rs) = j.dst;
        asm!(
            "tilestored [{c0} + {sc}*1], tmm0",
            "tilestored [{c1} + {sc}*1], tmm1",
            "tilestored [{c2} + {sc}*1], tmm2",
            "tilestored [{c3} + {sc}*1], tmm3",
            c0 = in(reg) cp, c1 = in(reg) cp.add(16), c2 = in(reg) cp.add(16 * rs),
            c3 = in(reg) cp.add(16 * rs + 16), sc = in(reg) rs * 4,
            options(nostack)
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even mantissa (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to 1 + 2^-6.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(-2.5), 0xc020);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        assert_eq!(from_bf16(to_bf16(f32::MAX)), f32::INFINITY);
        for x in [0.1f32, -3.7, 1e-20, 6.5e4] {
            assert!((from_bf16(to_bf16(x)) - x).abs() <= x.abs() / 256.0);
        }
    }

    /// Every path this CPU has, on ragged shapes (none a multiple of 16), every transpose,
    /// overwriting and accumulating, one and two threads: within bf16's tolerance of the
    /// fp32 product, and equal to the plain-Rust product of the same bf16 values up to
    /// fp32 summation order. Paths the CPU lacks are reported as skipped.
    #[test]
    fn every_available_path_matches_fp32() {
        for path in [Path::Amx, Path::Avx512Bf16, Path::F32] {
            if path == Path::F32 {
                // Not a bf16 kernel: fp32 products are checked by the gradient and parity tests.
                continue;
            }
            if !path.available() {
                eprintln!("bf16 path {}: skipped, this CPU lacks it", path.name());
                continue;
            }
            eprintln!("bf16 path {}: tested", path.name());
            // The last three are packed on two threads (over passes of k, over row strips);
            // the last has whole 32×32 blocks over three passes of k, which start from and
            // end in c itself.
            for (m, n, k) in [
                (5, 7, 3),
                (37, 50, 45),
                (70, 33, 100),
                (20, 2600, 650),
                (301, 40, 250),
                (70, 100, 1100),
            ] {
                let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
                let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
                let at: Vec<f32> = (0..k * m).map(|x| a[(x % m) * k + x / m]).collect();
                let bt: Vec<f32> = (0..n * k).map(|x| b[(x % k) * n + x / k]).collect();
                let want = naive(m, n, k, &a, &b);
                let ar: Vec<f32> = a.iter().map(|&v| from_bf16(to_bf16(v))).collect();
                let br: Vec<f32> = b.iter().map(|&v| from_bf16(to_bf16(v))).collect();
                let want_rounded = naive(m, n, k, &ar, &br);
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let (aa, a_st) = if ta { (&at, (1, m)) } else { (&a, (k, 1)) };
                    let (bb, b_st) = if tb { (&bt, (1, k)) } else { (&b, (n, 1)) };
                    // Starting from zero, from c (all ones) and from a row (a bias) whose
                    // column j holds j.
                    let row: Vec<f32> = (0..n).map(|j| j as f32).collect();
                    for (threads, start) in [(1, 0), (2, 1), (2, 2), (1, 2)] {
                        let mut c = vec![1.0; m * n];
                        let st = [Start::Zero, Start::C, Start::Rows(&row)][start];
                        matmul(path, threads, m, n, k, &mut c, aa, a_st, bb, b_st, st);
                        for (q, ((x, y), z)) in c.iter().zip(&want).zip(&want_rounded).enumerate() {
                            let base = [0.0, 1.0, (q % n) as f32][start];
                            let scale: f32 = 1.0 + y.abs() + (k as f32).sqrt();
                            assert!(
                                (x - base - y).abs() < 1e-2 * scale,
                                "{m}x{n}x{k} {ta} {tb}: {x} vs {y}"
                            );
                            assert!(
                                (x - base - z).abs() < 1e-5 * (k as f32) * (1.0 + z.abs()),
                                "{m}x{n}x{k}"
                            );
                        }
                    }
                }
                // A right operand packed once (transposed, as a layer's weight) and used
                // on two threads, as decoding's output layer is.
                let pbt = PackedB::new(k, n, &bt, 1, k);
                let mut c = vec![0.0; m * n];
                matmul_packed(path, 2, m, &mut c, &a, (k, 1), &pbt, false);
                for (x, z) in c.iter().zip(&want_rounded) {
                    assert!(
                        (x - z).abs() < 1e-5 * (k as f32) * (1.0 + z.abs()),
                        "{m}x{n}x{k}"
                    );
                }
                // The packed right operand with a strided left one, as a time loop uses it.
                let pb = PackedB::new(k, n, &b, n, 1);
                let a_rs = k + 5;
                let a_wide: Vec<f32> = (0..m * a_rs)
                    .map(|x| {
                        if x % a_rs < k {
                            a[(x / a_rs) * k + x % a_rs]
                        } else {
                            9.0
                        }
                    })
                    .collect();
                let mut c = vec![0.0; m * (n + 3)];
                left_mul_packed(path, m, &a_wide, a_rs, 1, &pb, &mut c, n + 3, false);
                for i in 0..m {
                    for j in 0..n {
                        let (x, z) = (c[i * (n + 3) + j], want_rounded[i * n + j]);
                        assert!((x - z).abs() < 1e-5 * (k as f32) * (1.0 + z.abs()));
                    }
                    assert!(c[i * (n + 3) + n..(i + 1) * (n + 3)]
                        .iter()
                        .all(|&v| v == 0.0));
                }
            }
        }
    }

    #[test]
    fn matvec_matches_fp32() {
        if !has_avx512bf16() {
            eprintln!("bf16 matvec: skipped, this CPU lacks AVX512-BF16");
            return;
        }
        for (n, k) in [(5, 3), (37, 45), (300, 1030)] {
            let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.11).cos()).collect();
            let wb: Vec<u16> = w.iter().map(|&v| to_bf16(v)).collect();
            let mut out = vec![0.0; n];
            matvec(&mut out, &wb, &x, 2);
            for (r, o) in out.iter().enumerate() {
                let want: f32 = (0..k)
                    .map(|p| from_bf16(wb[r * k + p]) * from_bf16(to_bf16(x[p])))
                    .sum();
                assert!(
                    (o - want).abs() < 1e-5 * k as f32 * (1.0 + want.abs()),
                    "{n}x{k} row {r}"
                );
            }
        }
    }

    /// The plain-Rust reference against the fp32 product on bf16-exact inputs (small
    /// integers): exact, so the packing order is right.
    #[test]
    fn reference_packing_is_exact_on_exact_inputs() {
        let (m, n, k) = (33, 35, 40);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
        let pb = PackedB::new(k, n, &b, n, 1);
        let mut pa = Buf::default();
        pack_a(1, m, k, pb.kp, &a, k, 1, &mut pa);
        let mut c = vec![0.0; m * n];
        // SAFETY: c is m × n.
        unsafe {
            run(
                Path::F32,
                m,
                0..round_up(m),
                0..round_up(n),
                &pa,
                &pb,
                c.as_mut_ptr(),
                n,
                n,
                Start::Zero,
            )
        };
        assert_eq!(c, naive(m, n, k, &a, &b));
    }
}
