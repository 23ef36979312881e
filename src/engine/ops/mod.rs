//! Dense kernels shared by every layer: matrix products through `gemm`, and the
//! elementwise activations the fused cells use.
//!
//! All matrices are row-major `&[f32]` slices; shapes are given in each doc comment.

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

/// Runs `f` with subnormals flushed on this thread ([`flush_denormals`]) and puts the
/// thread's MXCSR back afterwards: for a host whose own thread runs other float code after
/// ours (the Python interpreter's numpy), so that its arithmetic is left as it was.
pub fn with_flushed_denormals<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(target_arch = "x86_64")]
    #[allow(deprecated)]
    {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        // SAFETY: reading and restoring MXCSR (SSE2 is baseline on x86-64).
        let saved = unsafe { _mm_getcsr() };
        flush_denormals();
        struct Restore(u32);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: restores the value read above, also when `f` unwinds.
                unsafe { _mm_setcsr(self.0) }
            }
        }
        let _restore = Restore(saved);
        f()
    }
    #[cfg(not(target_arch = "x86_64"))]
    f()
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
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn fast512($($arg: $ty),*) $(-> $ret)? {
                    $body_fn($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
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

mod matmul;
#[cfg(test)]
mod tests;

pub use matmul::*;

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

/// A huge page: 2 MiB on x86-64.
const HUGE_PAGE: usize = 2 << 20;

/// Weights that batch-1 decoding reads whole for every token (8 MiB for a 2×512 LSTM in
/// bf16, twice that in fp32), so that the reads stream rather than miss the TLB:
/// `Streamed` starts on a 2 MiB boundary, and [`streamed`] asks Linux for transparent huge
/// pages over it (`madvise`; a hint, honoured where THP is `always` or `madvise`). It also
/// puts every row of a multiple of 64 bytes on a cache line.
pub type Streamed<T> = aligned_vec::AVec<T, aligned_vec::ConstAlign<HUGE_PAGE>>;

/// A [`Streamed`] buffer of `n` values, written by `fill`: `prev` when it holds `n` values
/// (a stepper repacks its weights after every optimizer step, and reusing the buffer spares
/// an allocation, its page faults and a pass of zeros each time), else a new one.
pub fn streamed<T: Copy + Default>(
    prev: Option<Streamed<T>>,
    n: usize,
    fill: impl FnOnce(&mut [T]),
) -> Streamed<T> {
    let mut v = match prev {
        Some(v) if v.len() == n => v,
        _ => fresh(n),
    };
    fill(&mut v);
    v
}

/// `n` zeros in a new [`Streamed`] buffer, advised onto huge pages before they are touched.
fn fresh<T: Copy + Default>(n: usize) -> Streamed<T> {
    let mut v = Streamed::<T>::with_capacity(HUGE_PAGE, n);
    let bytes = n * std::mem::size_of::<T>();
    #[cfg(target_os = "linux")]
    if bytes >= HUGE_PAGE {
        // SAFETY: the range lies inside the allocation just made; madvise only sets how its
        // pages are backed, before any of them is touched. Its result is ignored: a kernel
        // without THP leaves the buffer on small pages, which is correct, only slower.
        unsafe {
            libc::madvise(
                v.as_mut_ptr().cast(),
                bytes / HUGE_PAGE * HUGE_PAGE,
                libc::MADV_HUGEPAGE,
            )
        };
    }
    v.resize(n, T::default());
    v
}
