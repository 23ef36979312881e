#!/usr/bin/env python3
"""Writes the fuzz seed corpora, fuzz/corpus/<target>/, from the real data and rnnkit itself.

    RNNKIT_DATA_DIR=../shared/data tools/make_fuzz_seeds.py [--bin target/release/rnnkit]

Every seed is a few kilobytes: the first lines of the corpora in RNNKIT_DATA_DIR (CoNLL-2003,
WikiANN ru, Multi30k, SST-2, PTB), a tiny checkpoint of each task and tokenizers trained by
the rnnkit binary on those lines, and small word-vector files. Targets that read two inputs
take one byte first that says where the rest is cut (rnnkit::fuzz::split); the seeds put
the cut at the separation. tests/fuzz_replay.rs replays them, with the crashing inputs in
fuzz/regressions/, on stable Rust.
"""

import argparse
import os
import shutil
import subprocess
import tempfile


def head(path, n):
    with open(path, "rb") as f:
        return b"".join(f.readline() for _ in range(n))


def two(a, b):
    """One input of two parts for rnnkit::fuzz::split."""
    total = len(a) + len(b)
    k = min(255, (len(a) * 256 + total - 1) // max(total, 1))
    # Find the k whose cut falls exactly at len(a), when one does.
    for kk in range(256):
        if total * kk // 256 == len(a):
            k = kk
            break
    return bytes([k]) + a + b


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/rnnkit")
    ap.add_argument("--out", default="fuzz/corpus")
    a = ap.parse_args()
    data = os.environ.get("RNNKIT_DATA_DIR", "../shared/data")
    d = lambda *p: os.path.join(data, *p)
    seeds = {t: {} for t in ["checkpoint", "tokenizer", "conll", "parallel", "tsv", "vectors", "scorers"]}
    conll = head(d("conll2003", "valid.txt"), 60)
    wikiann = head(d("ru_wikiann", "val.conllu"), 60)
    seeds["conll"]["conll2003"] = conll
    seeds["conll"]["wikiann-ru"] = wikiann
    de, en = head(d("multi30k", "val.de"), 20), head(d("multi30k", "val.en"), 20)
    seeds["parallel"]["multi30k"] = two(de, en)
    tsv = b"".join(
        s + b"\t" + t
        for s, t in zip(de.splitlines(keepends=False), en.splitlines(keepends=True))
    )
    seeds["parallel"]["pairs-tsv"] = tsv
    seeds["tsv"]["sst2"] = head(d("sst2", "dev.tsv"), 25)
    seeds["tsv"]["labelled"] = b"".join(
        (b"pos\t" if i % 2 else b"neg\t") + l for i, l in enumerate(en.splitlines(keepends=True))
    )
    words = sorted(set(en.decode().lower().split()))[:30]
    vec = lambda w, i, k: w + " " + " ".join(f"{((i * 7 + j) % 11 - 5) / 10:.1f}" for j in range(k))
    seeds["vectors"]["word2vec"] = (f"{len(words)} 4\n" + "\n".join(vec(w, i, 4) for i, w in enumerate(words)) + "\n").encode()
    seeds["vectors"]["glove"] = ("\n".join(vec(w, i, 3) for i, w in enumerate(words)) + "\n").encode()
    seeds["scorers"]["conll"] = two(conll, conll.replace(b"B-PER", b"B-ORG"))
    seeds["scorers"]["bleu"] = two(en, en.replace(b"a ", b"the "))
    with tempfile.TemporaryDirectory() as tmp:
        t = lambda *p: os.path.join(tmp, *p)
        ptb = head(d("ptb", "ptb.valid.txt"), 40)
        open(t("lm.txt"), "wb").write(ptb)
        for kind in ["bpe", "word", "char"]:
            out = t(f"{kind}.json")
            extra = ["--vocab-size", "120"] if kind == "bpe" else []
            subprocess.run([a.bin, "tokenizer", "train", "--kind", kind, *extra, "--out", out, t("lm.txt")], check=True, stdout=subprocess.DEVNULL)
            seeds["tokenizer"][kind] = open(out, "rb").read()
        small = ["--epochs", "1", "--threads", "1", "--quiet", "--overwrite"]
        subprocess.run([a.bin, "lm", "train", "--train", t("lm.txt"), "--tokenizer", "char", "--embed", "4", "--hidden", "4", "--batch-size", "2", "--bptt", "8", "--max-tokens", "64", *small, "--out", t("lm")], check=True, stdout=subprocess.DEVNULL)
        seeds["checkpoint"]["lm"] = open(t("lm", "model.safetensors"), "rb").read()
        open(t("ner.conll"), "wb").write(conll)
        subprocess.run([a.bin, "tag", "train", "--train", t("ner.conll"), "--valid", t("ner.conll"), "--embed", "4", "--hidden", "4", "--char-dim", "2", "--char-hidden", "2", "--max-tokens", "50", *small, "--out", t("tag")], check=True, stdout=subprocess.DEVNULL)
        seeds["checkpoint"]["tag"] = open(t("tag", "model.safetensors"), "rb").read()
        open(t("de"), "wb").write(de)
        open(t("en"), "wb").write(en)
        subprocess.run([a.bin, "translate", "train", "--train", t("de"), t("en"), "--valid", t("de"), t("en"), "--embed", "4", "--hidden", "4", "--decoder-hidden", "4", "--min-freq", "1", "--max-tokens", "50", *small, "--out", t("mt")], check=True, stdout=subprocess.DEVNULL)
        seeds["checkpoint"]["translate"] = open(t("mt", "model.safetensors"), "rb").read()
    shutil.rmtree(a.out, ignore_errors=True)
    total = 0
    for target, files in seeds.items():
        os.makedirs(os.path.join(a.out, target))
        for name, b in files.items():
            open(os.path.join(a.out, target, name), "wb").write(b)
            total += len(b)
    print(f"{sum(len(f) for f in seeds.values())} seeds, {total / 1024:.0f} KiB in {a.out}")


if __name__ == "__main__":
    main()
