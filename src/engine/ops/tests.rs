//! Tests of the products against naive loops and of the activations.

use super::*;
use crate::engine::bf16;

#[test]
fn matmul_from_a_row_adds_the_row_to_the_product() {
    let (m, n, k) = (5, 7, 3);
    let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5).collect();
    let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.25).collect();
    let row: Vec<f32> = (0..n).map(|j| j as f32 * 10.0).collect();
    let mut want = vec![0.0; m * n];
    matmul(&mut want, [m, n, k], Mat::n(&a), Mat::n(&b), false);
    let mut c = vec![f32::NAN; m * n];
    matmul_from(
        &mut c,
        [m, n, k],
        Mat::n(&a),
        Mat::n(&b),
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
                    matmul(&mut c, [m, n, k], Mat::new(&a, ta), Mat::new(&b, tb), acc);
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
            p.left_mul(
                m,
                Out {
                    data: &mut c,
                    rs: c_rs,
                },
                Strided::rows(&a, a_rs),
                acc,
            );
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
    matmul(&mut b, [n, 1, k], Mat::n(&w), Mat::n(&x), false);
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

/// A streamed buffer holds what `fill` wrote and starts on a 2 MiB boundary, small or
/// large (only the large one is advised onto huge pages); a previous buffer of the same
/// length is refilled in place, one of another length replaced.
#[test]
fn streamed_is_filled_aligned_and_reused() {
    let count = |d: &mut [u16]| d.iter_mut().enumerate().for_each(|(i, x)| *x = i as u16);
    for n in [0usize, 5, 3 << 20] {
        let v = streamed(None, n, count);
        assert_eq!(v.len(), n);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u16));
        if n > 0 {
            assert_eq!(v.as_ptr() as usize % (2 << 20), 0);
        }
    }
    let v = streamed(None, 1000, count);
    let at = v.as_ptr();
    let v = streamed(Some(v), 1000, |d: &mut [u16]| d.fill(7));
    assert_eq!(v.as_ptr(), at);
    assert!(v.iter().all(|&x| x == 7));
    let v = streamed(Some(v), 10, count);
    assert_eq!(v.len(), 10);
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u16));
}
