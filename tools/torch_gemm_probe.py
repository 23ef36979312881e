#!/usr/bin/env python3
"""GFLOP/s of PyTorch's fp32 and bf16 matmul on the shapes of examples/gemm_probe.rs.

Usage: python3 tools/torch_gemm_probe.py [THREADS] [NAME_FILTER]
Run beside `cargo run --release --example gemm_probe -- THREADS` on the same machine, in
the same minutes. Each shape's figure is the best of five trials, as on the rnnkit side.
PyTorch's per-step product is `h @ W` as an LSTM step issues it (nothing prepacked).
"""
import sys
import time

import torch

SHAPES = [  # name, m, n, k, a transposed, b transposed (as in gemm_probe.rs)
    ("step h·Whh (B20,H650,1 thr)", 20, 1300, 650, False, False),
    ("step h·Whh (B64,H512,1 thr)", 64, 1024, 512, False, False),
    ("step h·Whh (B64,H150,1 thr)", 64, 600, 150, False, False),
    ("step dG·Whh (B64,H150,1 thr)", 64, 150, 600, False, False),
    ("step dG·Whh (B20,H650/2,1 thr)", 20, 325, 2600, False, False),
    ("input proj x·Wihᵀ (700x2600x650)", 700, 2600, 650, False, True),
    ("decoder y·Wᵀ (700x10000x650)", 700, 10000, 650, False, True),
    ("decoder dX = dY·W (700x650x10000)", 700, 650, 10000, False, False),
    ("decoder dW = dYᵀ·X (10000x650x700)", 10000, 650, 700, True, False),
    ("char dW_ih (2048x512x6400)", 2048, 512, 6400, True, False),
    ("square 2048³", 2048, 2048, 2048, False, False),
]


def rate(m, n, k, ta, tb, dtype):
    a = torch.randn(k, m) if ta else torch.randn(m, k)
    b = torch.randn(n, k) if tb else torch.randn(k, n)
    a, b = a.to(dtype), b.to(dtype)
    op_a = a.t() if ta else a
    op_b = b.t() if tb else b
    flops = 2.0 * m * n * k
    reps = max(3, min(20000, int(2e10 / flops)))
    for _ in range(3):
        op_a @ op_b
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            op_a @ op_b
        best = max(best, flops * reps / (time.perf_counter() - t) / 1e9)
    return best


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    print(f"torch {torch.__version__}  threads: {threads}")
    print(f"{'shape':38} {'fp32':>10} {'bf16':>10}")
    for name, m, n, k, ta, tb in SHAPES:
        if only not in name:
            continue
        # The step products run on one thread in rnnkit (each thread owns its units).
        torch.set_num_threads(1 if name.startswith("step") else threads)
        f = rate(m, n, k, ta, tb, torch.float32)
        h = rate(m, n, k, ta, tb, torch.bfloat16)
        print(f"{name:38} {f:10.1f} {h:10.1f}")


if __name__ == "__main__":
    main()
