//! Tests of the bf16 products against fp32 references, on every kernel the CPU has.

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
                let (aa, (rs, cs)) = if ta { (&at, (1, m)) } else { (&a, (k, 1)) };
                let aa = Strided { data: aa, rs, cs };
                let (bb, (rs, cs)) = if tb { (&bt, (1, k)) } else { (&b, (n, 1)) };
                let bb = Strided { data: bb, rs, cs };
                // Starting from zero, from c (all ones) and from a row (a bias) whose
                // column j holds j.
                let row: Vec<f32> = (0..n).map(|j| j as f32).collect();
                for (threads, start) in [(1, 0), (2, 1), (2, 2), (1, 2)] {
                    let mut c = vec![1.0; m * n];
                    let st = [Start::Zero, Start::C, Start::Rows(&row)][start];
                    matmul(path, threads, [m, n, k], &mut c, aa, bb, st);
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
            matmul_packed(path, 2, &mut c, Strided::rows(&a, k), &pbt, false);
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
            let out = Out {
                data: &mut c,
                rs: n + 3,
            };
            left_mul_packed(path, m, Strided::rows(&a_wide, a_rs), &pb, out, false);
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
    pack_a(1, m, k, pb.kp, Strided::rows(&a, k), &mut pa);
    let mut c = vec![0.0; m * n];
    // SAFETY: c is m × n.
    unsafe {
        let out = COut {
            p: c.as_mut_ptr(),
            rs: n,
            m,
            n,
        };
        run(
            Path::F32,
            0..round_up(m),
            0..round_up(n),
            &pa,
            &pb,
            out,
            Start::Zero,
        )
    };
    assert_eq!(c, naive(m, n, k, &a, &b));
}
