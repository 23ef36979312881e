//! Dense kernels shared by every layer: matrix products through `gemm`, and the
//! elementwise activations the fused cells use.
//!
//! All matrices are row-major `&[f32]` slices; shapes are given in each doc comment.

use super::{bf16, panel32};
use std::sync::atomic::{AtomicUsize, Ordering};

static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads matrix products and parallel loops may use. Calling it once
/// before training makes results a function of (seed, threads) only.
/// Subnormal floats are flushed to zero on the calling thread and on the pool's threads
/// (see [`flush_denormals`]).
pub fn set_threads(n: usize) {
    let n = n.max(1);
    THREADS.store(n, Ordering::Relaxed);
    flush_denormals();
    // The global pool can only be built once; a second call keeps the first pool,
    // which is fine because `gemm` is told the thread count on every call.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .start_handler(|_| flush_denormals())
        .build_global();
}

/// Treats subnormal floats (below 1.2e-38) as zero on this thread: MXCSR's flush-to-zero
/// and denormals-are-zero bits, PyTorch's `torch.set_flush_denormal(True)`. Why: a softmax
/// over far-apart scores (a peaked bilinear attention, a confident output layer) gives
/// weights that small, and every product that reads or writes them then goes through
/// microcode assists, 10–100× slower per operation — a translator with general attention
/// trained at an eighth of its speed on Intel. Results change only where such a value
/// would have been kept.
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: MXCSR exists on every x86-64 CPU (SSE2 is baseline); setting FTZ (bit 15)
    // and DAZ (bit 6) changes rounding of subnormals only.
    #[allow(deprecated)]
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
}

thread_local! {
    /// This thread's cap on [`threads`], set by [`with_threads`].
    static CAP: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Threads in use: the value from [`set_threads`], else the machine's core count, capped
/// on this thread by [`with_threads`].
pub fn threads() -> usize {
    let n = match THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    n.min(CAP.with(|c| c.get()))
}

/// Runs `f` with [`threads`] capped at `n` on this thread: two jobs that run side by side
/// (the two directions of a layer) each keep their products and loops on their own thread.
pub fn with_threads<R>(n: usize, f: impl FnOnce() -> R) -> R {
    let old = CAP.with(|c| c.replace(n.max(1)));
    // Restored even if `f` unwinds, so a caught panic cannot leave the thread capped.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAP.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(old);
    f()
}

/// Defines `pub fn $name` that runs `$body_fn` compiled for AVX-512F or AVX2+FMA when the
/// CPU has them (checked once), and for the baseline target otherwise. The elementwise kernels
/// (gate math, softmax) are written as plain loops; this lets them use 8-wide vectors and
/// fused multiply-adds without requiring those instructions of every machine.
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body_fn:path) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn fast512($($arg: $ty),*) $(-> $ret)? {
                    $body_fn($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn fast($($arg: $ty),*) $(-> $ret)? {
                    $body_fn($($arg),*)
                }
                if $crate::engine::ops::has_avx512() {
                    // SAFETY: the CPU supports the features `fast512` was compiled for.
                    return unsafe { fast512($($arg),*) };
                }
                if $crate::engine::ops::has_avx2() {
                    // SAFETY: the CPU supports the features `fast` was compiled for.
                    return unsafe { fast($($arg),*) };
                }
            }
            $body_fn($($arg),*)
        }
    };
}

/// Whether this CPU runs AVX-512F besides AVX2 and FMA (detected once): the elementwise
/// kernels then take 16 floats a vector (Zen 4 and Intel servers have it).
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| has_avx2() && is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU runs AVX2 and FMA (detected once).
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether a product is worth the thread pool: waking it costs more than a tiny product.
fn is_big(m: usize, n: usize, k: usize) -> bool {
    m * n * k >= 48 * 48 * 48
}

/// `c[m,n] = (accumulate ? c : 0) + op(a)[m,k] · op(b)[k,n]`.
///
/// `a` is stored `[m,k]` (or `[k,m]` when `ta`), `b` is stored `[k,n]` (or `[n,k]` when `tb`).
/// Every product in rnnkit goes through here, so the thread policy lives in one place:
/// tiny products run on one thread because waking the pool costs more than they do.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    accumulate: bool,
) {
    let start = bf16::Start::accumulating(accumulate);
    matmul_from(m, n, k, c, a, ta, b, tb, start);
}

/// [`matmul`] with the result's start spelled out: zero, c itself, or `Start::Rows(r)`, the
/// `[n]` vector `r` on every row — a layer's bias and its product in one pass over c. The
/// bf16 kernels start their sums from the bias; in fp32, c is filled with it and the product
/// accumulates.
#[allow(clippy::too_many_arguments)]
pub fn matmul_from(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    start: bf16::Start,
) {
    assert!(
        c.len() >= m * n && a.len() >= m * k && b.len() >= k * n,
        "matmul shapes"
    );
    if m == 0 || n == 0 {
        return;
    }
    if let bf16::Start::Rows(rows) = start {
        assert_eq!(rows.len(), n, "matmul start row");
    }
    let path = bf16::active_path();
    let accumulate = match start {
        bf16::Start::Rows(rows) if k == 0 || path == bf16::Path::F32 => {
            c[..m * n]
                .chunks_exact_mut(n)
                .for_each(|row| row.copy_from_slice(rows));
            true
        }
        bf16::Start::Rows(_) => false,
        bf16::Start::C => true,
        bf16::Start::Zero => false,
    };
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
    let t = threads();
    let big = is_big(m, n, k);
    if path != bf16::Path::F32 {
        let st = |rs: isize, cs: isize| (rs as usize, cs as usize);
        let t = if big { t } else { 1 };
        return bf16::matmul(
            path,
            t,
            m,
            n,
            k,
            c,
            a,
            st(a_rs, a_cs),
            b,
            st(b_rs, b_cs),
            start,
        );
    }
    if t > 1 && big && m.max(n) >= 32 * t {
        // Split C into t blocks along its longer side and give each thread one
        // single-threaded product. Measured here against gemm's own threading on the shapes
        // of an LM step (2 threads): equal or faster on every one, and 1.35× on the
        // decoder's dX = dlogits · W (k = vocab), where gemm's split of k-heavy products lags.
        let split_m = m >= n;
        let len = if split_m { m } else { n };
        let part = len.div_ceil(t).div_ceil(16) * 16;
        let (cp, ap, bp) = (
            SendPtr(c.as_mut_ptr()),
            a.as_ptr() as usize,
            b.as_ptr() as usize,
        );
        use rayon::prelude::*;
        (0..t).into_par_iter().for_each(|p| {
            let lo = (p * part).min(len);
            let hi = ((p + 1) * part).min(len);
            if lo == hi {
                return;
            }
            // SAFETY: block p writes rows (or columns) lo..hi of c only; the asserts above
            // bound every read of a and b.
            unsafe {
                let (ap, bp) = (ap as *const f32, bp as *const f32);
                let (mm, nn, c0, a0, b0) = if split_m {
                    (hi - lo, n, lo * n, ap.offset(lo as isize * a_rs), bp)
                } else {
                    (m, hi - lo, lo, ap, bp.offset(lo as isize * b_cs))
                };
                let c = cp.ptr().add(c0);
                gemm_raw(mm, nn, k, c, n, accumulate, a0, a_rs, a_cs, b0, b_rs, b_cs);
            }
        });
        return;
    }
    // SAFETY: the asserts above bound every index gemm touches given these strides.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            c.as_mut_ptr(),
            n,
            accumulate,
            a.as_ptr(),
            a_rs,
            a_cs,
            b.as_ptr(),
            b_rs,
            b_cs,
        );
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: each thread writes a disjoint block through it (see `matmul`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// Through a method, so closures capture the whole (Send) wrapper, not its field.
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// One single-threaded `gemm` call: `c[m,n]` (row stride `c_rs`) (+)= a · b with the
/// given row/column strides.
///
/// # Safety
/// Every element the strides reach must lie inside its allocation.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    c_rs: usize,
    accumulate: bool,
    a: *const f32,
    a_rs: isize,
    a_cs: isize,
    b: *const f32,
    b_rs: isize,
    b_cs: isize,
) {
    gemm::gemm(
        m,
        n,
        k,
        c,
        1,
        c_rs as isize,
        accumulate,
        a,
        a_cs,
        a_rs,
        b,
        b_cs,
        b_rs,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// Single-threaded `c (+)= a · b` with explicit row/column strides, for the products
/// issued inside a time loop whose threads are already split over hidden units.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    c_rs: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let last = |rs: usize, cs: usize, r: usize, cc: usize| (r - 1) * rs + (cc - 1) * cs;
    assert!(
        last(c_rs, 1, m, n) < c.len()
            && last(a_rs, a_cs, m, k) < a.len()
            && last(b_rs, b_cs, k, n) < b.len(),
        "matmul_strided shapes"
    );
    // SAFETY: the assert bounds the last element each operand's strides reach.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_rs,
            accumulate,
            a.as_ptr(),
            a_rs as isize,
            a_cs as isize,
            b.as_ptr(),
            b_rs as isize,
            b_cs as isize,
        );
    }
}

/// A right operand `[k, n]` packed once for the small products a time loop repeats at every
/// step with the same weights. With AVX-512F it is stored as 32-column panels for
/// [`panel32`]'s kernel, which reads the left operand in place. Otherwise as `⌈n/64⌉`
/// contiguous `[k, 64]` column panels for `gemm` (which copies its operands on every call; a
/// contiguous 64-wide panel is cheaper to pack and to stream than a 64-column window of a wide
/// row-major matrix, 6–40% faster on the 2×512 and 2×650 LMs' steps); below 2^18 elements
/// one call per step costs less than the per-call overhead of several, and the matrix stays
/// one panel.
pub struct Panels {
    k: usize,
    n: usize,
    /// `gemm` panels' width; 0 for [`panel32`]'s layout.
    width: usize,
    data: Vec<f32>,
    /// Under `--precision bf16`, the matrix packed for the bf16 kernels instead.
    bf16: Option<(bf16::Path, bf16::PackedB)>,
}

impl Panels {
    /// From a row-major `[k, n]` matrix.
    pub fn new(b: &[f32], k: usize, n: usize) -> Panels {
        assert!(b.len() >= k * n, "Panels shape");
        let path = bf16::active_path();
        if path != bf16::Path::F32 {
            let packed = bf16::PackedB::new(k, n, b, n, 1);
            return Panels {
                k,
                n,
                width: n,
                data: Vec::new(),
                bf16: Some((path, packed)),
            };
        }
        if panel32::available() {
            return Panels {
                k,
                n,
                width: 0,
                data: panel32::pack(b, n, k, n),
                bf16: None,
            };
        }
        let width = if k * n >= 1 << 18 { 64 } else { n.max(1) };
        let mut data = Vec::with_capacity(k * n);
        for j0 in (0..n).step_by(width) {
            let w = width.min(n - j0);
            for r in 0..k {
                data.extend_from_slice(&b[r * n + j0..r * n + j0 + w]);
            }
        }
        Panels {
            k,
            n,
            width,
            data,
            bf16: None,
        }
    }

    /// Single-threaded `c[m, n] (+)= a[m, k] · self`, with row strides `c_rs` and `a_rs`.
    pub fn left_mul(
        &self,
        m: usize,
        c: &mut [f32],
        c_rs: usize,
        a: &[f32],
        a_rs: usize,
        accumulate: bool,
    ) {
        if let Some((path, b)) = &self.bf16 {
            return bf16::left_mul_packed(*path, m, a, a_rs, 1, b, c, c_rs, accumulate);
        }
        let k = self.k;
        if self.width == 0 {
            return panel32::left_mul(m, self.n, k, c, c_rs, a, a_rs, &self.data, accumulate);
        }
        for j0 in (0..self.n).step_by(self.width) {
            let w = self.width.min(self.n - j0);
            matmul_strided(
                m,
                w,
                k,
                &mut c[j0..],
                c_rs,
                a,
                a_rs,
                1,
                &self.data[j0 * k..],
                w,
                1,
                accumulate,
            );
        }
    }
}

/// A right operand `op(b) [k, n]` that many products share, such as decoding's output
/// layer at every step. Under bf16 it is rounded and packed once (repacking the 1792×5898
/// output weight at every step was a seventh of bf16 beam search); under fp32 it is only
/// borrowed, since `gemm` packs per call anyway.
pub enum Prepacked<'a> {
    F32 {
        b: &'a [f32],
        k: usize,
        n: usize,
        tb: bool,
    },
    Bf16(bf16::Path, bf16::PackedB),
}

impl<'a> Prepacked<'a> {
    /// `b` stored `[k, n]`, or `[n, k]` when `tb`, as for [`matmul`].
    pub fn new(b: &'a [f32], k: usize, n: usize, tb: bool) -> Prepacked<'a> {
        assert!(b.len() >= k * n, "Prepacked shape");
        match bf16::active_path() {
            bf16::Path::F32 => Prepacked::F32 { b, k, n, tb },
            path => {
                let (rs, cs) = if tb { (1, k) } else { (n, 1) };
                Prepacked::Bf16(path, bf16::PackedB::new(k, n, b, rs, cs))
            }
        }
    }

    /// `c[m, n] (+)= a[m, k] · op(b)`, with [`matmul`]'s thread policy.
    pub fn left_mul(&self, m: usize, c: &mut [f32], a: &[f32], accumulate: bool) {
        match self {
            &Prepacked::F32 { b, k, n, tb } => matmul(m, n, k, c, a, false, b, tb, accumulate),
            Prepacked::Bf16(path, pb) => {
                let (k, n) = (pb.k(), pb.n());
                assert!(c.len() >= m * n && a.len() >= m * k, "matmul shapes");
                let t = if is_big(m, n, k) { threads() } else { 1 };
                bf16::matmul_packed(*path, t, m, c, a, (k, 1), pb, accumulate);
            }
        }
    }
}

/// `out[n] (+)= w[n,k] · x[k]`: a matrix-vector product for batch-1 decoding, split over
/// rows across threads. Decoding one token is bound by reading the weights, so it pays to
/// stream each row once with a vectorised dot product rather than pack it for a GEMM.
pub fn matvec(out: &mut [f32], w: &[f32], x: &[f32], accumulate: bool) {
    use rayon::prelude::*;
    let (n, k) = (out.len(), x.len());
    assert!(w.len() >= n * k);
    let t = threads();
    if t > 1 && n * k >= 1 << 16 {
        let rows = n.div_ceil(t).div_ceil(8) * 8;
        out.par_chunks_mut(rows)
            .enumerate()
            .for_each(|(ci, chunk)| matvec_rows(chunk, &w[ci * rows * k..], x, accumulate));
    } else {
        matvec_rows(out, w, x, accumulate);
    }
}

multiversion!(fn matvec_rows(out: &mut [f32], w: &[f32], x: &[f32], accumulate: bool) => matvec_rows_body);

#[inline(always)]
fn matvec_rows_body(out: &mut [f32], w: &[f32], x: &[f32], accumulate: bool) {
    let k = x.len();
    for (o, row) in out.iter_mut().zip(w.chunks_exact(k)) {
        let d = dot(row, x);
        *o = if accumulate { *o + d } else { d };
    }
}

/// Dot product with sixteen independent accumulators so the compiler vectorises it
/// (two 8-wide registers in flight hide the FMA latency).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `exp(x)` to about 2 ulp, written so that loops over it vectorise (libm's `expf` does
/// not): the softmax over a 10k vocabulary calls it millions of times per batch.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.0);
    // exp(x) = 2^k · exp(r), k = round(x / ln2), r = x − k·ln2 in [−ln2/2, ln2/2]
    // Adding and subtracting 1.5·2^23 rounds to nearest without a libm call, so the
    // loop stays vectorised on baseline x86-64.
    const MAGIC: f32 = 12_582_912.0;
    let y = x * std::f32::consts::LOG2_E + MAGIC;
    let k = y - MAGIC;
    let r = x - k * 0.693_145_75 - k * 1.428_606_8e-6;
    // Minimax polynomial for exp on that interval (Cephes expf coefficients).
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    // k as an integer straight from y's mantissa: an `as i32` cast saturates and maps NaN
    // to 0, and those branches stop the compiler from vectorising the loop.
    let ki = (y.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let bits = (ki.wrapping_add(127) as u32) << 23;
    e * f32::from_bits(bits)
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-x))
}

#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    // tanh(x) = 1 − 2/(exp(2x)+1); accurate to ~1e-7 absolute and vectorisable.
    1.0 - 2.0 / (fast_exp(2.0 * x) + 1.0)
}

/// `v[i] = f(v[i])`, the ragged end of `v` (under 16 values) done as one full vector on a
/// copy: the compiler leaves that end scalar, and a scalar exp costs as much as a vector
/// one, so a 150-unit row spent more on its last 6 values than on the first 144. Inlined
/// into its caller to take the caller's target features.
#[inline(always)]
pub fn map_in_place(v: &mut [f32], f: impl Fn(f32) -> f32) {
    let (body, tail) = v.split_at_mut(v.len() / 16 * 16);
    body.iter_mut().for_each(|x| *x = f(*x));
    if !tail.is_empty() {
        let mut buf = [0f32; 16];
        buf[..tail.len()].copy_from_slice(tail);
        buf.iter_mut().for_each(|x| *x = f(*x));
        tail.copy_from_slice(&buf[..tail.len()]);
    }
}

/// Below this many elements the row passes run on the calling thread: they are also called
/// on a step's small buffers inside the time loop, whose threads are not the pool's.
const PAR_ELEMS: usize = 1 << 18;

/// `x [n, f] += bias [f]` on every row; rows are split over the pool when large.
pub fn add_bias_rows(x: &mut [f32], bias: &[f32]) {
    use rayon::prelude::*;
    let add = |rows: &mut [f32]| {
        for row in rows.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    };
    let t = threads();
    if t > 1 && x.len() >= PAR_ELEMS {
        let rows = (x.len() / bias.len()).div_ceil(t);
        x.par_chunks_mut(rows * bias.len()).for_each(add);
    } else {
        add(x);
    }
}

/// `acc [f] += Σ_rows x [n, f]`. When large, the columns are split over the pool; each
/// column is still summed row by row in order, so the result does not depend on threads.
pub fn sum_rows_into(acc: &mut [f32], x: &[f32]) {
    use rayon::prelude::*;
    let f = acc.len();
    let sum = |c0: usize, a: &mut [f32]| {
        for row in x.chunks_exact(f) {
            for (a, v) in a.iter_mut().zip(&row[c0..]) {
                *a += v;
            }
        }
    };
    let t = threads();
    if t > 1 && x.len() >= PAR_ELEMS && f >= 16 * t {
        let cols = f.div_ceil(t).div_ceil(16) * 16;
        acc.par_chunks_mut(cols)
            .enumerate()
            .for_each(|(i, a)| sum(i * cols, a));
    } else {
        sum(0, acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_from_a_row_adds_the_row_to_the_product() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.25).collect();
        let row: Vec<f32> = (0..n).map(|j| j as f32 * 10.0).collect();
        let mut want = vec![0.0; m * n];
        matmul(m, n, k, &mut want, &a, false, &b, false, false);
        let mut c = vec![f32::NAN; m * n];
        matmul_from(
            m,
            n,
            k,
            &mut c,
            &a,
            false,
            &b,
            false,
            bf16::Start::Rows(&row),
        );
        for (q, (x, y)) in c.iter().zip(&want).enumerate() {
            assert_eq!(*x, y + row[q % n]);
        }
    }

    #[test]
    fn map_in_place_equals_the_scalar_map() {
        for n in 0..40 {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin() * 5.0).collect();
            let mut v = x.clone();
            map_in_place(&mut v, tanh);
            for (a, b) in v.iter().zip(&x) {
                assert_eq!(a.to_bits(), tanh(*b).to_bits(), "n = {n}");
            }
        }
    }

    #[test]
    fn subnormals_are_flushed_on_compute_threads() {
        flush_denormals();
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        // Below the smallest normal: zero under FTZ/DAZ, a subnormal otherwise.
        let half = std::hint::black_box(tiny * 0.5);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(half, 0.0);
        // DAZ: a subnormal read in is zero too.
        let sub = std::hint::black_box(f32::from_bits(1));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(sub * 2.0, 0.0);
        let _ = (half, sub);
    }

    fn naive(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av * bv;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    /// Small products, and large ones that are split over two threads along m or along n
    /// (with a ragged last block), for every transpose, overwriting and accumulating.
    #[test]
    fn matmul_matches_naive_for_every_transpose() {
        set_threads(2);
        for (m, n, k) in [(7, 5, 9), (150, 70, 40), (33, 130, 30)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            for ta in [false, true] {
                for tb in [false, true] {
                    let want = naive(m, n, k, &a, ta, &b, tb);
                    for acc in [false, true] {
                        let mut c = vec![1.0; m * n];
                        matmul(m, n, k, &mut c, &a, ta, &b, tb, acc);
                        let base = if acc { 1.0 } else { 0.0 };
                        for (x, y) in c.iter().zip(&want) {
                            let tol = 1e-5 * (1.0 + y.abs()) * k as f32;
                            assert!((x - base - y).abs() < tol, "{m}x{n}x{k} ta={ta} tb={tb}");
                        }
                    }
                }
            }
        }
    }

    /// Panel products with strided rows, accumulating or not: one panel (small), and
    /// many with a ragged last one (600 × 520 ≥ 2^18 elements, 520 = 8·64 + 8).
    #[test]
    fn panels_match_naive() {
        let m = 5;
        for (k, n) in [(40, 30), (600, 520)] {
            let (a_rs, c_rs) = (k + 3, n + 7);
            let a: Vec<f32> = (0..m * a_rs).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            let a_dense: Vec<f32> = (0..m)
                .flat_map(|r| a[r * a_rs..r * a_rs + k].to_vec())
                .collect();
            let want = naive(m, n, k, &a_dense, false, &b, false);
            let p = Panels::new(&b, k, n);
            for acc in [false, true] {
                let mut c = vec![1.0; m * c_rs];
                p.left_mul(m, &mut c, c_rs, &a, a_rs, acc);
                let base = if acc { 1.0 } else { 0.0 };
                for r in 0..m {
                    for j in 0..n {
                        let (x, y) = (c[r * c_rs + j], want[r * n + j]);
                        assert!(
                            (x - base - y).abs() < 1e-5 * (1.0 + y.abs()) * k as f32,
                            "{k}x{n} acc={acc}"
                        );
                    }
                    assert!(c[r * c_rs + n..(r + 1) * c_rs].iter().all(|&v| v == 1.0));
                }
            }
        }
    }

    #[test]
    fn matvec_matches_matmul() {
        let (n, k) = (300, 257);
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.013).sin()).collect();
        let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.7).cos()).collect();
        let mut a = vec![0.0; n];
        let mut b = vec![0.0; n];
        matvec(&mut a, &w, &x, false);
        matmul(n, 1, k, &mut b, &w, false, &x, false, false);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-3 * (1.0 + y.abs()));
        }
    }

    #[test]
    fn fast_math_is_accurate() {
        let mut x = -30.0f32;
        while x < 30.0 {
            let e = fast_exp(x);
            assert!((e - x.exp()).abs() <= 3e-7 * x.exp(), "exp({x})");
            assert!((tanh(x) - x.tanh()).abs() < 2e-7, "tanh({x})");
            assert!((sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 2e-7);
            x += 0.0137;
        }
        assert!(fast_exp(-1000.0) < 1e-37);
        assert!(fast_exp(1000.0).is_finite());
    }
}
