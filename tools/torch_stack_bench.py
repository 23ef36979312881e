#!/usr/bin/env python3
"""PyTorch's recurrent stack alone, forward + backward, for comparison with
`rnnkit bench lm --stack-only` (the engine's share of a training step).

Usage:  python3 tools/torch_stack_bench.py [--threads 2] [--json]
Needs:  torch. Times nn.LSTM (oneDNN on CPU) on random inputs: no embedding, decoder, loss or
optimizer; the gradient flowing into the stack's outputs is random, as in rnnkit's bench.
Shapes are the issue's: zaremba-small 2x200 (batch 20, 20 steps), zaremba-medium 2x650
(batch 20, 35 steps), and the 2x512 character LSTM (batch 64, 100 steps).
"""
import argparse, json, time

import torch
import torch.nn as nn

SHAPES = {
    # name: (hidden, layers, batch, steps, dropout between layers (the preset's), timed iterations)
    "zaremba-small": (200, 2, 20, 20, 0.0, 200),
    "zaremba-medium": (650, 2, 20, 35, 0.5, 30),
    "char-shakespeare": (512, 2, 64, 100, 0.2, 10),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name, (h, layers, b, t, dropout, iters) in SHAPES.items():
        rnn = nn.LSTM(h, h, layers, dropout=dropout)
        x = torch.randn(t, b, h, requires_grad=True)
        dy = torch.randn(t, b, h)

        def step():
            y, _ = rnn(x)
            y.backward(dy)

        for _ in range(3):
            step()
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        dt = time.perf_counter() - t0
        tps = iters * t * b / dt
        if args.json:
            print(json.dumps({"tool": "torch", "config": name + "-stack", "threads": args.threads,
                              "tokens_per_s": tps}))
        else:
            print(f"{name:18} stack fwd+bwd {tps:10.0f} tokens/s ({args.threads} threads)")


if __name__ == "__main__":
    main()
