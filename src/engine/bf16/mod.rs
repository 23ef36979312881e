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

use super::ops::{Out, Strided};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod blocks;
mod pack;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod vec512;

use blocks::*;
pub use pack::PackedB;
use pack::*;

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

/// `c[m, n]` (+)= a · b with `b` packed, on one thread, through `path` (which must be
/// available).
pub fn left_mul_packed(path: Path, m: usize, a: Strided, b: &PackedB, c: Out, accumulate: bool) {
    let (n, k) = (b.n, b.k);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        path.available(),
        "{} is not available on this CPU",
        path.name()
    );
    assert!(c.holds(m, n) && a.holds(m, k), "bf16 product shapes");
    A_BUF.with_borrow_mut(|buf| {
        pack_a(1, m, k, b.kp, a, buf);
        let c = COut {
            p: c.data.as_mut_ptr(),
            rs: c.rs,
            m,
            n,
        };
        // SAFETY: the assert above bounds every element of c the kernel writes.
        unsafe {
            run(
                path,
                0..round_up(m),
                0..round_up(n),
                buf,
                b,
                c,
                Start::accumulating(accumulate),
            )
        }
    });
}

/// `c[m, n]` = start + op(a) · op(b) in bf16 on `threads` threads, with the strides of
/// `ops::matmul`. Both operands are packed once, then the product runs as
/// [`matmul_packed`].
pub fn matmul(
    path: Path,
    threads: usize,
    [m, n, k]: [usize; 3],
    c: &mut [f32],
    a: Strided,
    b: Strided,
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
    let pb = PackedB::new_on(threads, k, n, b, pb_buf);
    let pa = matmul_packed_with(path, threads, &mut c[..m * n], a, &pb, start, pa);
    PACKED.set((pa, pb.data));
}

/// `c[m, n]` (+)= op(a) · b with b packed beforehand (a weight that many products share,
/// such as decoding's output layer at every step), on `threads` threads; `c` is exactly
/// `[m, n]`.
pub fn matmul_packed(
    path: Path,
    threads: usize,
    c: &mut [f32],
    a: Strided,
    b: &PackedB,
    accumulate: bool,
) {
    let pa = PACKED.with_borrow_mut(|(pa, _)| std::mem::take(pa));
    let pa = matmul_packed_with(path, threads, c, a, b, Start::accumulating(accumulate), pa);
    PACKED.with_borrow_mut(|(slot, _)| *slot = pa);
}

/// [`matmul_packed`] with `pa` as the storage of the packed left operand, returned for
/// reuse. The 32×32 blocks of c are split among the threads along c's longer side.
fn matmul_packed_with(
    path: Path,
    threads: usize,
    c: &mut [f32],
    a: Strided,
    pb: &PackedB,
    start: Start,
    mut pa: Buf,
) -> Buf {
    let (n, k) = (pb.n, pb.k);
    if c.is_empty() || n == 0 {
        return pa;
    }
    let m = c.len() / n;
    assert!(
        path.available(),
        "{} is not available on this CPU",
        path.name()
    );
    assert!(c.len() == m * n && a.holds(m, k), "bf16 product shapes");
    pack_a(threads, m, k, pb.kp, a, &mut pa);
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
        let c = COut {
            p: cp as *mut f32,
            rs: n,
            m,
            n,
        };
        unsafe { run(path, rows, cols, pa_ref, pb, c, start) }
    };
    if t == 1 {
        part(0);
    } else {
        use rayon::prelude::*;
        (0..t).into_par_iter().for_each(part);
    }
    pa
}

/// Rounds a row-major matrix to bf16 for [`matvec`] (`None` when the CPU lacks
/// AVX512-BF16, or under fp32): batch-1 decoding streams every weight once per token, so
/// half the bytes is up to twice the speed. On huge pages, and refilling `prev` when it
/// fits, as [`crate::engine::ops::streamed`] says.
pub fn weights_for_matvec(
    w: &[f32],
    prev: Option<crate::engine::ops::Streamed<u16>>,
) -> Option<crate::engine::ops::Streamed<u16>> {
    (active_path() != Path::F32 && has_avx512bf16()).then(|| {
        crate::engine::ops::streamed(prev, w.len(), |d| {
            d.iter_mut().zip(w).for_each(|(d, &v)| *d = to_bf16(v))
        })
    })
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
