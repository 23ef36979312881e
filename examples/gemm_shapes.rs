//! Measures GFLOP/s of the matrix products the LSTM layers issue, per transpose layout.
use rnnkit::engine::ops::{matmul, set_threads};
use std::time::Instant;

fn main() {
    set_threads(2);
    let shapes = [
        (
            "xg fwd    [6400,512]x[512,2048]^T",
            6400,
            2048,
            512,
            false,
            true,
        ),
        (
            "hh fwd    [64,512]x[2048,512]^T",
            64,
            2048,
            512,
            false,
            true,
        ),
        (
            "dh bwd    [64,2048]x[2048,512]",
            64,
            512,
            2048,
            false,
            false,
        ),
        (
            "dW        [6400,2048]^T x[6400,512]",
            2048,
            512,
            6400,
            true,
            false,
        ),
        (
            "dx        [6400,2048]x[2048,512]",
            6400,
            512,
            2048,
            false,
            false,
        ),
        (
            "dec fwd   [400,200]x[10000,200]^T",
            400,
            10000,
            200,
            false,
            true,
        ),
        (
            "dec dW    [400,10000]^T x [400,200]",
            10000,
            200,
            400,
            true,
            false,
        ),
        (
            "dec dx    [400,10000]x[10000,200]",
            400,
            200,
            10000,
            false,
            false,
        ),
        ("hh small  [20,200]x[800,200]^T", 20, 800, 200, false, true),
        ("hh small  [20,200]x[200,400]", 20, 400, 200, false, false),
        ("hh small  [20,200]x[400,200]^T", 20, 400, 200, false, true),
        ("hh char   [64,512]x[512,1024]", 64, 1024, 512, false, false),
        (
            "hh char   [64,512]x[1024,512]^T",
            64,
            1024,
            512,
            false,
            true,
        ),
        ("hh med    [20,650]x[650,1300]", 20, 1300, 650, false, false),
        (
            "hh med    [20,650]x[1300,650]^T",
            20,
            1300,
            650,
            false,
            true,
        ),
        (
            "hh med    [20,650]x[2600,650]^T",
            20,
            2600,
            650,
            false,
            true,
        ),
        (
            "dh med    [20,2600]x[2600,650]",
            20,
            650,
            2600,
            false,
            false,
        ),
    ];
    for (name, m, n, k, ta, tb) in shapes {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        let reps = (2e10 / (2.0 * (m * n * k) as f64)).clamp(3.0, 2000.0) as usize;
        matmul(m, n, k, &mut c, &a, ta, &b, tb, false);
        let t = Instant::now();
        for _ in 0..reps {
            matmul(m, n, k, &mut c, &a, ta, &b, tb, true);
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "{name:40} {:8.1} GFLOP/s  {:8.3} ms",
            2.0 * (m * n * k) as f64 / s / 1e9,
            s * 1e3
        );
    }
}
