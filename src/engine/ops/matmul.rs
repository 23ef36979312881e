//! Matrix products through `gemm` (split over the thread pool when large), the packed
//! panels a time loop reuses at every step, and the strided products of attention.

use super::*;
use crate::engine::{bf16, panel32};

/// Whether a product is worth the thread pool: waking it costs more than a tiny product.
fn is_big(m: usize, n: usize, k: usize) -> bool {
    m * n * k >= 48 * 48 * 48
}

/// One operand of a product: a row-major matrix, read as stored or transposed.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub transposed: bool,
}

impl<'a> Mat<'a> {
    /// `data` as stored.
    pub fn n(data: &'a [f32]) -> Mat<'a> {
        Mat {
            data,
            transposed: false,
        }
    }

    /// `data` read transposed.
    pub fn t(data: &'a [f32]) -> Mat<'a> {
        Mat {
            data,
            transposed: true,
        }
    }

    pub fn new(data: &'a [f32], transposed: bool) -> Mat<'a> {
        Mat { data, transposed }
    }
}

/// A matrix read through strides: element (i, j) at `data[i·rs + j·cs]` (a transposed
/// operand is a swap of the two). Its size is the product's, given beside it.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Strided<'a> {
    /// Rows `rs` apart, each contiguous.
    pub fn rows(data: &'a [f32], rs: usize) -> Strided<'a> {
        Strided { data, rs, cs: 1 }
    }

    /// Whether `data` holds every element of an `r × c` matrix read this way.
    pub fn holds(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// Where a product's result goes: element (i, j) at `data[i·rs + j]`.
#[derive(Debug)]
pub struct Out<'a> {
    pub data: &'a mut [f32],
    pub rs: usize,
}

impl Out<'_> {
    /// Whether `data` holds every element of an `r × c` result.
    pub fn holds(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + c <= self.data.len()
    }
}

/// A `gemm` operand by raw pointer: element (i, j) at `p[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct Raw {
    p: *const f32,
    rs: isize,
    cs: isize,
}

/// `c[m,n] = (accumulate ? c : 0) + op(a)[m,k] · op(b)[k,n]`, with `[m, n, k]` the sizes.
///
/// `a` is stored `[m,k]` (or `[k,m]` when transposed), `b` `[k,n]` (or `[n,k]`). Every
/// product in rnnkit goes through here, so the thread policy lives in one place: tiny
/// products run on one thread because waking the pool costs more than they do.
pub fn matmul(c: &mut [f32], mnk: [usize; 3], a: Mat, b: Mat, accumulate: bool) {
    matmul_from(c, mnk, a, b, bf16::Start::accumulating(accumulate));
}

/// [`matmul`] with the result's start spelled out: zero, c itself, or `Start::Rows(r)`, the
/// `[n]` vector `r` on every row — a layer's bias and its product in one pass over c. The
/// bf16 kernels start their sums from the bias; in fp32, c is filled with it and the product
/// accumulates.
pub fn matmul_from(c: &mut [f32], [m, n, k]: [usize; 3], a: Mat, b: Mat, start: bf16::Start) {
    let (a, ta, b, tb) = (a.data, a.transposed, b.data, b.transposed);
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
        let t = if big { t } else { 1 };
        let (a, b) = (
            Strided {
                data: a,
                rs: a_rs as usize,
                cs: a_cs as usize,
            },
            Strided {
                data: b,
                rs: b_rs as usize,
                cs: b_cs as usize,
            },
        );
        return bf16::matmul(path, t, [m, n, k], c, a, b, start);
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
                let (a, b) = (
                    Raw {
                        p: a0,
                        rs: a_rs,
                        cs: a_cs,
                    },
                    Raw {
                        p: b0,
                        rs: b_rs,
                        cs: b_cs,
                    },
                );
                gemm_raw([mm, nn, k], (cp.ptr().add(c0), n), a, b, accumulate);
            }
        });
        return;
    }
    // SAFETY: the asserts above bound every index gemm touches given these strides.
    unsafe {
        let (a, b) = (
            Raw {
                p: a.as_ptr(),
                rs: a_rs,
                cs: a_cs,
            },
            Raw {
                p: b.as_ptr(),
                rs: b_rs,
                cs: b_cs,
            },
        );
        gemm_raw([m, n, k], (c.as_mut_ptr(), n), a, b, accumulate);
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

/// One single-threaded `gemm` call: `c[m,n]` (its pointer and row stride) (+)= a · b.
///
/// # Safety
/// Every element the strides reach must lie inside its allocation.
unsafe fn gemm_raw([m, n, k]: [usize; 3], c: (*mut f32, usize), a: Raw, b: Raw, accumulate: bool) {
    gemm::gemm(
        m,
        n,
        k,
        c.0,
        1,
        c.1 as isize,
        accumulate,
        a.p,
        a.cs,
        a.rs,
        b.p,
        b.cs,
        b.rs,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// Single-threaded `c[m,n] (+)= a · b` through strides, for the products issued inside a
/// time loop whose threads are already split over hidden units.
pub fn matmul_strided([m, n, k]: [usize; 3], c: Out, a: Strided, b: Strided, accumulate: bool) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        c.holds(m, n) && a.holds(m, k) && b.holds(k, n),
        "matmul_strided shapes"
    );
    let raw = |s: Strided| Raw {
        p: s.data.as_ptr(),
        rs: s.rs as isize,
        cs: s.cs as isize,
    };
    // SAFETY: the assert bounds the last element each operand's strides reach.
    unsafe {
        gemm_raw(
            [m, n, k],
            (c.data.as_mut_ptr(), c.rs),
            raw(a),
            raw(b),
            accumulate,
        )
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

    /// Single-threaded `c[m, n] (+)= a[m, k] · self`, `a`'s rows contiguous.
    pub fn left_mul(&self, m: usize, c: Out, a: Strided, accumulate: bool) {
        if let Some((path, b)) = &self.bf16 {
            return bf16::left_mul_packed(*path, m, a, b, c, accumulate);
        }
        let k = self.k;
        if self.width == 0 {
            return panel32::left_mul([m, self.n, k], c, a, &self.data, accumulate);
        }
        for j0 in (0..self.n).step_by(self.width) {
            let w = self.width.min(self.n - j0);
            matmul_strided(
                [m, w, k],
                Out {
                    data: &mut c.data[j0..],
                    rs: c.rs,
                },
                a,
                Strided::rows(&self.data[j0 * k..], w),
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
            &Prepacked::F32 { b, k, n, tb } => {
                matmul(c, [m, n, k], Mat::n(a), Mat::new(b, tb), accumulate)
            }
            Prepacked::Bf16(path, pb) => {
                let (k, n) = (pb.k(), pb.n());
                assert!(c.len() >= m * n && a.len() >= m * k, "matmul shapes");
                let t = if is_big(m, n, k) { threads() } else { 1 };
                let a = Strided::rows(a, k);
                bf16::matmul_packed(*path, t, &mut c[..m * n], a, pb, accumulate);
            }
        }
    }
}
