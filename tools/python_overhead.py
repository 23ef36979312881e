#!/usr/bin/env python3
"""What the Python binding adds to the work, against the CLI on the same model and input:
tagging the CoNLL-2003 test file, and batch-1 generation's tokens per second. Rounds
alternate which side tags first; medians are printed, with the CPU.

    python tools/python_overhead.py --bin target/release/rnnkit --tagger runs/ner/model.safetensors \
        --lm runs/char/model.safetensors --data ../shared/data --rounds 12

The CLI's time is its whole process (start, load, read, tag, write), measured outside; the
Python time is load, read (`rnnkit.read_conll`) and tag in the interpreter (what a user's
script does), so the comparison charges each side what a user waits for. Each Python round
starts as a fresh script would: the previous round's results are freed and collected before
the clock starts, as the CLI starts each round in a new process.
"""

import argparse
import gc
import json
import statistics
import subprocess
import time
from pathlib import Path

import rnnkit


def cli_generate(a, seed):
    """The CLI's batch-1 generation rate, tokens/s, as its --json summary gives it."""
    out = subprocess.run([a.bin, "lm", "generate", "--model", a.lm, "--prompt", "ROMEO:", "--max-tokens",
                          str(a.tokens), "--seed", str(seed), "--json", "--threads", "1"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["tokens_per_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tagger", required=True)
    ap.add_argument("--lm", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--rounds", type=int, default=6, help="an even count gives each side the first place equally")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds of rest before timing generation")
    a = ap.parse_args()
    test = Path(a.data) / "conll2003" / "test.txt"
    rnnkit.set_threads(a.threads)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    tag_cli, tag_py, tagp_cli, tagp_py, gen_cli, gen_py, gen_stream = [], [], [], [], [], [], []
    for r in range(a.rounds):
        # Tags only (the CLI's default), then with each tag's probability (--probs). Which
        # side goes first alternates between rounds: whichever runs right after the other
        # measured up to 8 % slower (caches and the scheduler after a second of work on
        # every core), and alternating spreads that over both sides.
        for probs, cli_t, py_t in ((False, tag_cli, tag_py), (True, tagp_cli, tagp_py)):
            for side in ("cli", "py") if r % 2 == 0 else ("py", "cli"):
                if side == "cli":
                    t0 = time.perf_counter()
                    subprocess.run([a.bin, "tag", "predict", "--model", a.tagger, "--input", str(test), "--format",
                                    "conll", "--threads", str(a.threads)] + (["--probs"] if probs else []),
                                   check=True, stdout=subprocess.DEVNULL)
                    cli_t.append(time.perf_counter() - t0)
                    continue
                tagger = tagged = tokens = None
                gc.collect()
                t0 = time.perf_counter()
                tagger = rnnkit.load(a.tagger)
                tokens, _ = rnnkit.read_conll(test)
                tagged = tagger.tag(tokens, probs=probs)
                py_t.append(time.perf_counter() - t0)
                assert len(tagged) == 3453, len(tagged)
        if r % 2 == 0:  # the same alternation as tagging's
            gen_cli.append(cli_generate(a, seed=r + 1))
        lm = rnnkit.load(a.lm)
        rnnkit.set_threads(1)
        # This process has just tagged on every core: let the pool's workers go idle first,
        # so that they do not share the core with generation.
        time.sleep(a.settle)
        t0 = time.perf_counter()
        lm.generate("ROMEO:", max_tokens=a.tokens, seed=r + 1)
        gen_py.append(a.tokens / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        n = sum(1 for _ in lm.stream("ROMEO:", max_tokens=a.tokens, seed=r + 1))
        gen_stream.append(n / (time.perf_counter() - t0))
        if r % 2 == 1:
            gen_cli.append(cli_generate(a, seed=r + 1))
        rnnkit.set_threads(a.threads)
        print(f"round {r + 1}: tag CLI {tag_cli[-1]:.3f} s, Python {tag_py[-1]:.3f} s; with probabilities CLI "
              f"{tagp_cli[-1]:.3f} s, Python {tagp_py[-1]:.3f} s; generate tokens/s "
              f"CLI {gen_cli[-1]:.0f}, Python {gen_py[-1]:.0f}, Python stream {gen_stream[-1]:.0f}", flush=True)
    m = statistics.median
    print(f"CPU: {cpu}; {a.threads} threads for tagging, 1 for generation; medians of {a.rounds} rounds")
    print(f"tag the CoNLL-2003 test file: CLI {m(tag_cli):.3f} s, Python {m(tag_py):.3f} s, "
          f"Python / CLI {m(tag_py) / m(tag_cli):.3f}")
    print(f"  with probabilities: CLI {m(tagp_cli):.3f} s, Python {m(tagp_py):.3f} s, "
          f"Python / CLI {m(tagp_py) / m(tagp_cli):.3f}")
    print(f"generate {a.tokens} tokens: CLI {m(gen_cli):.0f} tokens/s, Python {m(gen_py):.0f} "
          f"({m(gen_py) / m(gen_cli):.3f}), stream {m(gen_stream):.0f} ({m(gen_stream) / m(gen_cli):.3f})")


if __name__ == "__main__":
    main()
