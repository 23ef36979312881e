//! GFLOP/s of the products rnnkit issues, fp32 and bf16, per shape; tools/torch_gemm_probe.py
//! prints PyTorch's on the same shapes. `cargo run --release --example gemm_probe [threads]`.
//!
//! Shapes (m, n, k, transposes) are those of an LM training step (zaremba-medium: B 20,
//! T 35, H 650, V 10k; the char model: B 64, T 100, H 512): the per-step recurrent product
//! of one thread's units, the whole-sequence input projection, the vocabulary decoder
//! and its two backward products, and 2048³.

use rnnkit::engine::bf16::{self, Precision};
use rnnkit::engine::ops::Mat;
use rnnkit::engine::ops::{matmul, set_threads, Out, Panels, Strided};
use std::time::Instant;

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    set_threads(threads);
    println!(
        "cpu: {}  threads: {threads}  bf16 kernel: {}",
        cpu(),
        bf16::best_path().name()
    );
    let shapes: &[(&str, usize, usize, usize, bool, bool)] = &[
        ("step h·Whh (B20,H650,1 thr)", 20, 1300, 650, false, false),
        ("step h·Whh (B64,H512,1 thr)", 64, 1024, 512, false, false),
        ("step h·Whh (B64,H150,1 thr)", 64, 600, 150, false, false),
        ("step dG·Whh (B64,H150,1 thr)", 64, 150, 600, false, false),
        (
            "step dG·Whh (B20,H650/2,1 thr)",
            20,
            325,
            2600,
            false,
            false,
        ),
        (
            "input proj x·Wihᵀ (700x2600x650)",
            700,
            2600,
            650,
            false,
            true,
        ),
        ("decoder y·Wᵀ (700x10000x650)", 700, 10000, 650, false, true),
        (
            "decoder dX = dY·W (700x650x10000)",
            700,
            650,
            10000,
            false,
            false,
        ),
        (
            "decoder dW = dYᵀ·X (10000x650x700)",
            10000,
            650,
            700,
            true,
            false,
        ),
        ("char dW_ih (2048x512x6400)", 2048, 512, 6400, true, false),
        ("square 2048³", 2048, 2048, 2048, false, false),
    ];
    println!("{:38} {:>10} {:>10}", "shape", "fp32", "bf16");
    // A second argument keeps only the shapes whose name contains it.
    let only = std::env::args().nth(2).unwrap_or_default();
    for &(name, m, n, k, ta, tb) in shapes.iter().filter(|s| s.0.contains(&only)) {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i % 89) as f32 - 44.0) / 89.0)
            .collect();
        let mut c = vec![0f32; m * n];
        let mut rate = |p: Precision| {
            bf16::set_precision(p);
            let flops = 2.0 * (m * n * k) as f64;
            let reps = ((2e10 / flops) as usize).clamp(3, 20000);
            // A time loop's product: the weights packed once, then one call per step.
            let panels = name.starts_with("step").then(|| Panels::new(&b, k, n));
            let once = |c: &mut [f32]| match &panels {
                Some(p) => p.left_mul(m, Out { data: c, rs: n }, Strided::rows(&a, k), false),
                None => matmul(c, [m, n, k], Mat::new(&a, ta), Mat::new(&b, tb), false),
            };
            once(&mut c);
            // The best of five trials: these machines are shared, and interference only
            // ever slows a trial down.
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..reps {
                        once(&mut c);
                    }
                    flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9
                })
                .fold(0.0, f64::max)
        };
        let (f, h) = (rate(Precision::F32), rate(Precision::Bf16));
        println!("{name:38} {f:10.1} {h:10.1}");
    }
    for (m, h) in [(64, 150), (20, 650), (64, 512)] {
        let name = format!("step fused LSTM (B{m},H{h},1 thr)");
        if let (true, Some(f)) = (name.contains(&only), fused_lstm(m, h)) {
            println!("{name:38} {f:10.1} {:>10}", "-");
        }
    }
}

/// The fused LSTM step (product, gates and cell in one pass) on `m` rows of `h` units, one
/// thread, as GFLOP/s of its product: what the time loop of an fp32 LSTM runs per step.
fn fused_lstm(m: usize, h: usize) -> Option<f64> {
    use rnnkit::engine::panel32::{lstm_step, supported, LstmPanels, LstmStep};
    if !supported() {
        return None;
    }
    let w: Vec<f32> = (0..h * 4 * h)
        .map(|i| ((i % 89) as f32 - 44.0) / 890.0)
        .collect();
    let xg: Vec<f32> = (0..m * 4 * h)
        .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
        .collect();
    let h_prev: Vec<f32> = (0..m * h)
        .map(|i| ((i % 83) as f32 - 41.0) / 83.0)
        .collect();
    let x_off: Vec<usize> = (0..m).map(|r| r * 4 * h).collect();
    let (mut c, mut hl, active) = (vec![0.0; m * h], vec![0.0; m * h], vec![true; m]);
    let panels = LstmPanels::new(&w, h, h);
    let flops = 2.0 * (m * 4 * h * h) as f64;
    let reps = ((2e10 / flops) as usize).clamp(3, 20000);
    let mut once = || {
        let step = LstmStep {
            h_prev: &h_prev,
            h_rs: h,
            xg: &xg,
            x_off: &x_off,
            c: &mut c,
            h: hl.as_mut_ptr(),
            h_out_rs: h,
            gates: std::ptr::null_mut(),
            g_rs: 0,
            active: &active,
            j0: 0,
        };
        // SAFETY: no gates are written.
        unsafe { lstm_step(&panels, m, step) };
    };
    once();
    Some(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..reps {
                    once();
                }
                flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max),
    )
}

fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default()
}
