#!/usr/bin/env python3
"""Checks that a BPE tokenizer trained by rnnkit is a tokenizer.json that Python's `tokenizers` loads
unchanged and encodes identically, line by line.

Usage: check_bpe.py RNNKIT_BINARY TEXT_FILE [--vocab-size 8000]
Needs: pip install tokenizers. Prints one JSON line; exits 1 on any difference.
"""
import argparse, json, subprocess, sys, tempfile, os

from tokenizers import Tokenizer

ap = argparse.ArgumentParser()
ap.add_argument("rnnkit"); ap.add_argument("text"); ap.add_argument("--vocab-size", type=int, default=8000)
a = ap.parse_args()
tmp = tempfile.mkdtemp()
tok_path = os.path.join(tmp, "tokenizer.json")
subprocess.run([a.rnnkit, "tokenizer", "train", "--kind", "bpe", "--vocab-size", str(a.vocab_size), "--out", tok_path, a.text],
               check=True, stdout=subprocess.DEVNULL)
ours = subprocess.run([a.rnnkit, "tokenizer", "encode", "--tokenizer", tok_path, a.text], check=True,
                      capture_output=True, text=True).stdout.splitlines()
py = Tokenizer.from_file(tok_path)
lines = open(a.text, encoding="utf-8").read().splitlines()
bad = [i for i, (l, o) in enumerate(zip(lines, ours)) if py.encode(l).ids != json.loads(o)]
ok = not bad and len(ours) == len(lines)
print(json.dumps({"file": a.text, "lines": len(lines), "identical": ok, "first_difference": bad[0] + 1 if bad else None,
                  "vocab_size": py.get_vocab_size()}))
sys.exit(0 if ok else 1)
