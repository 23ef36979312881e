#!/usr/bin/env python3
"""Crash-safety harness: SIGKILL a training run at random moments, resume it each time,
and check that it ends bit for bit where an uninterrupted run with the same seed ends.

    tools/kill_harness.py --bin target/release/rnnkit --kills 20 --work /tmp/kh -- \\
        lm train --train T --valid V --epochs 3 --save-every 1 --eval-every 7 --threads 1

The command after `--` is a `rnnkit <task> train ...` command without --out. It runs once
uninterrupted into WORK/whole; then into WORK/killed, killed with SIGKILL after a random
delay (uniform in [--min-delay, --max-delay] seconds) --kills times, resumed with
`rnnkit <task> train --resume WORK/killed` after each kill (or started afresh if it died
before its first save), and finally left to finish. With --save-every 1 the kills land
mid-step, mid-validation and mid-save alike. Checks: every tensor of model.safetensors
and train_state.safetensors is byte-identical, and metrics.jsonl holds the same records
(wall-clock fields aside). Standard library only; exit 1 on any difference.
"""

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import time


def tensors(path):
    """{name: (dtype, shape, bytes)} of a safetensors file."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8 : 8 + n])
    data = buf[8 + n :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], data[a:b])
    return out


def records(path):
    out = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            out.append({k: v for k, v in r.items() if k != "wall_s" and not k.endswith("_per_s")})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/rnnkit")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--work", required=True)
    ap.add_argument("--min-delay", type=float, default=0.05)
    ap.add_argument("--max-delay", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if len(cmd) < 2 or cmd[1] != "train":
        sys.exit("give the training command after --, e.g. -- lm train --train T ...")
    rng = random.Random(a.seed)
    shutil.rmtree(a.work, ignore_errors=True)
    whole, killed = os.path.join(a.work, "whole"), os.path.join(a.work, "killed")
    os.makedirs(a.work)
    quiet = ["--quiet"]
    # Bit-identical needs the same thread count (the products split their sums by it).
    if "--threads" in cmd:
        quiet += ["--threads", cmd[cmd.index("--threads") + 1]]
    t0 = time.time()
    subprocess.run([a.bin, *cmd, "--quiet", "--out", whole], check=True, stdout=subprocess.DEVNULL)
    print(f"uninterrupted run: {time.time() - t0:.1f} s")
    kills, starts = 0, 0
    while True:
        if os.path.exists(os.path.join(killed, "train_state.safetensors")):
            argv = [a.bin, cmd[0], "train", "--resume", killed, *quiet]
        else:
            argv = [a.bin, *cmd, "--quiet", "--out", killed, "--overwrite"]
        starts += 1
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < a.kills:
            try:
                p.wait(timeout=rng.uniform(a.min_delay, a.max_delay))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                kills += 1
                continue
        else:
            p.wait()
        if p.returncode != 0:
            sys.exit(f"run {starts} failed ({p.returncode}): {p.stderr.read().decode()}")
        if kills >= a.kills:
            break
        # It finished before the kill: nothing left to interrupt, so start it again.
        print(f"the run finished after {kills} kills; restarting it to place the rest")
        shutil.rmtree(killed)
    bad = []
    for f in ["model.safetensors", "train_state.safetensors"]:
        x, y = tensors(os.path.join(whole, f)), tensors(os.path.join(killed, f))
        if x.keys() != y.keys():
            bad.append(f"{f}: tensor names differ")
        bad += [f"{f}: {n} differs" for n in x if n in y and x[n] != y[n]]
    if records(os.path.join(whole, "metrics.jsonl")) != records(os.path.join(killed, "metrics.jsonl")):
        bad.append("metrics.jsonl records differ")
    verdict = "FAIL" if bad else "PASS"
    print(f"{verdict}: {kills} SIGKILLs, {starts} starts, {len(tensors(os.path.join(whole, 'model.safetensors')))} tensors compared")
    for b in bad:
        print("  " + b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
