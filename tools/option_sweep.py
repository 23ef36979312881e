#!/usr/bin/env python3
"""Every option of every command, given values a careless or hostile user would give.

For each subcommand, the options that take a value are read from its --help; each is given
every value of a list (zero, negative, NaN, infinities, overflowing and tiny numbers, junk,
empty; for files: /dev/null, /dev/zero, a missing path, a folder, an empty file, random
bytes, one 2 MB line) on top of a small valid invocation over tiny slices of
RNNKIT_DATA_DIR's corpora. /dev/null must still be a device after each run. A run passes when it exits 0 or 2 within the timeout under an
address-space limit (or 3 with the documented divergence stop, `--on-nan stop`), an exit 2
prints one line, and an exit 0 prints no NaN or infinity and no null metric. Everything
else is listed.

    RNNKIT_DATA_DIR=../shared/data python3 tools/option_sweep.py --bin target/release/rnnkit \
        --work /tmp/sweep [--only "tag train"] [--json]
"""
import argparse
import json
import os
import re
import resource
import shutil
import stat
import subprocess
import sys
import time

NUMBERS = ["0", "-1", "1", "nan", "inf", "-inf", "1e30", "1e-30", "18446744073709551616", "abc", ""]
PATH_NAMES = {
    "MODEL", "DATA", "TRAIN", "VALID", "TEST", "INPUT", "GOLD", "PRED", "REFERENCE", "HYP",
    "FILE", "PRETRAINED", "INIT_FROM_LM", "CONFIG", "RESUME", "TOKENIZER", "EVAL", "SRC", "TGT",
}
OUT_NAMES = {"OUT", "ATTENTION_MAP", "CONFUSION_PNG"}
# An exit 0 must not report a metric as null (JSON's NaN) — "test_*" keys are null when no
# --test was given — nor print NaN or an infinity outside the JSON (which echoes inputs).
NULL_METRIC = re.compile(r'"(?!test_)\w*(loss|ppl|f1|bleu|chrf|accuracy)\w*":null')
NAN_TEXT = re.compile(r"(?<![\w-])(nan|NaN|-?inf|-?Infinity)(?![\w-])")


def bad_output(text):
    if NULL_METRIC.search(text):
        return True
    return any(NAN_TEXT.search(l) for l in text.splitlines() if not l.startswith("{"))


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def head(src, dst, n):
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as g:
        for i, line in enumerate(f):
            if i >= n:
                break
            g.write(line)


def conll_head(src, dst, sentences):
    out, k = [], 0
    with open(src, encoding="utf-8") as f:
        for line in f:
            out.append(line)
            if not line.strip():
                k += 1
                if k >= sentences:
                    break
    open(dst, "w", encoding="utf-8").writelines(out)


def prepare(bin_, w, data):
    """Tiny files and one model of each task; returns the base invocations."""
    os.makedirs(w, exist_ok=True)
    f = lambda name: os.path.join(w, name)
    head(f"{data}/ptb/ptb.train.txt", f("lm.train"), 200)
    head(f"{data}/ptb/ptb.valid.txt", f("lm.valid"), 40)
    conll_head(f"{data}/conll2003/train.txt", f("conll.txt"), 40)
    head(f"{data}/sst2/train.tsv", f("sst.tsv"), 120)
    for lang in ["de", "en"]:
        head(f"{data}/multi30k/train.{lang}", f(f"mt.{lang}"), 80)
    open(f("empty"), "w").close()
    with open(f("random"), "wb") as g:
        g.write(os.urandom(4096))
    with open(f("longline"), "w") as g:
        g.write("word " * 400_000)
    os.makedirs(f("folder"), exist_ok=True)
    small = ["--embed", "8", "--hidden", "8", "--epochs", "1", "--quiet", "--json", "--threads", "1"]
    lm = ["lm", "train", "--train", f("lm.train"), "--valid", f("lm.valid"), "--tokenizer", "word",
          "--layers", "1", "--batch-size", "4", "--bptt", "8"] + small
    tag = ["tag", "train", "--train", f("conll.txt"), "--valid", f("conll.txt"), "--test", f("conll.txt"),
           "--char-dim", "4", "--char-hidden", "4", "--batch-size", "8"] + small
    cls = ["classify", "train", "--train", f("sst.tsv"), "--valid", f("sst.tsv"), "--header",
           "--batch-size", "8"] + small
    mt = ["translate", "train", "--train", f("mt.de"), f("mt.en"), "--valid", f("mt.de"), f("mt.en"),
          "--batch-size", "8", "--decoder-hidden", "8"] + small
    models = {}
    for name, args in [("lm", lm), ("tag", tag), ("classify", cls), ("translate", mt)]:
        out = f(f"model-{name}")
        shutil.rmtree(out, ignore_errors=True)
        r = sh([bin_] + args + ["--out", out])
        if r.returncode != 0:
            sys.exit(f"base run {name} failed: {r.stderr}")
        models[name] = os.path.join(out, "model.safetensors")
    r = sh([bin_, "tokenizer", "train", "--kind", "bpe", "--vocab-size", "300", "--out", f("tok.json"), f("lm.train")])
    if r.returncode != 0:
        sys.exit(f"tokenizer train failed: {r.stderr}")
    one = ["--threads", "1"]
    return {
        "lm train": lm + ["--out", "{out}"],
        "lm eval": ["lm", "eval", "--model", models["lm"], "--data", f("lm.valid"), "--json"] + one,
        "lm generate": ["lm", "generate", "--model", models["lm"], "--max-tokens", "5", "--json"] + one,
        "tag train": tag + ["--out", "{out}"],
        "tag eval": ["tag", "eval", "--model", models["tag"], "--data", f("conll.txt"), "--json"] + one,
        "tag predict": ["tag", "predict", "--model", models["tag"], "--input", f("conll.txt")] + one,
        "tag score": ["tag", "score", "--gold", f("conll.txt"), "--pred", f("conll.txt"), "--json"],
        "classify train": cls + ["--out", "{out}"],
        "classify eval": ["classify", "eval", "--model", models["classify"], "--data", f("sst.tsv"), "--header", "--json"] + one,
        "classify predict": ["classify", "predict", "--model", models["classify"], "--input", f("lm.valid"), "--json"] + one,
        "translate train": mt + ["--out", "{out}"],
        "translate eval": ["translate", "eval", "--model", models["translate"], "--data", f("mt.de"), f("mt.en"), "--json"] + one,
        "translate predict": ["translate", "predict", "--model", models["translate"], "--input", f("mt.de"), "--json"] + one,
        "translate score": ["translate", "score", "--ref", f("mt.en"), "--hyp", f("mt.en"), "--json"],
        "tokenizer train": ["tokenizer", "train", "--kind", "bpe", "--vocab-size", "300", "--out", "{out}/tok.json", f("lm.train")],
        "tokenizer stats": ["tokenizer", "stats", "--kind", "word", "--eval", f("lm.valid"), f("lm.train"), "--json"],
        "tokenizer encode": ["tokenizer", "encode", "--tokenizer", f("tok.json"), f("lm.valid")],
        "plot": ["plot", "--out", "{out}/p.png", os.path.dirname(models["lm"])],
        "convert": ["convert", "--model", models["tag"], "--out", "{out}/m.safetensors", "--json"],
        "bench lm": ["bench", "lm", "--embed", "8", "--hidden", "8", "--vocab", "50", "--batch-size", "2",
                     "--bptt", "4", "--steps", "2", "--json"] + one,
        "bench generate": ["bench", "generate", "--embed", "8", "--hidden", "8", "--vocab", "50", "--steps", "5", "--json"] + one,
        "bench tag": ["bench", "tag", "--batch-size", "2", "--length", "4", "--steps", "2", "--json"] + one,
        "bench classify": ["bench", "classify", "--batch-size", "2", "--length", "4", "--steps", "2", "--json"] + one,
        "bench translate": ["bench", "translate", "--batch-size", "2", "--length", "4", "--steps", "1", "--sentences", "2",
                            "--decode-batch", "2", "--max-len", "3", "--json"] + one,
    }, f


def options(bin_, cmd):
    """(flag, value names) of every option of `cmd` that takes values."""
    text = sh([bin_] + cmd.split() + ["--help"]).stdout
    out = []
    for m in re.finditer(r"^\s+(?:-\w, )?(--[a-z0-9-]+)((?: <[A-Z_]+>)+)", text, re.M):
        out.append((m.group(1), re.findall(r"<([A-Z_]+)>", m.group(2))))
    return out


def values(names, f):
    name = names[0]
    if name in PATH_NAMES:
        return ["/dev/null", "/dev/zero", "/nonexistent/x", f("folder"), f("empty"), f("random"), f("longline"), ""]
    if name in OUT_NAMES:
        return ["/dev/null", "/proc/nope/x", f("random") + "/x", ""]
    return NUMBERS + ["x" * 10_000]


def with_option(base, flag, vals):
    """`base` with `flag` set to `vals` (replacing the values it has there)."""
    args = list(base)
    if flag in args:
        i = args.index(flag)
        args[i + 1:i + 1 + len(vals)] = vals
        return args
    return args + [flag] + vals


def limit():
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/rnnkit")
    ap.add_argument("--work", default="/tmp/rnnkit-sweep")
    ap.add_argument("--only", help="one subcommand, e.g. 'tag train'")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    data = os.environ.get("RNNKIT_DATA_DIR")
    if not data:
        sys.exit("set RNNKIT_DATA_DIR")
    bin_ = os.path.abspath(a.bin)
    bases, f = prepare(bin_, a.work, data)
    runs, failures, n = 0, [], 0
    t0 = time.time()
    for cmd, base in bases.items():
        if a.only and cmd != a.only:
            continue
        for flag, names in options(bin_, cmd):
            if flag in ("--resume", "--config") and "train" not in cmd:
                continue
            for v in values(names, f):
                n += 1
                out = os.path.join(a.work, "outs", str(n))
                shutil.rmtree(out, ignore_errors=True)
                os.makedirs(out)
                args = [x.replace("{out}", out) for x in with_option(base, flag, [v] * len(names))]
                if flag == "--resume":
                    args = [x for x in args if x != "--out" and not x.startswith(out)]
                try:
                    r = subprocess.run([bin_] + args, capture_output=True, text=True, errors="replace",
                                       timeout=a.timeout, preexec_fn=limit, stdin=subprocess.DEVNULL)
                    code, err, so = r.returncode, r.stderr, r.stdout
                except subprocess.TimeoutExpired:
                    code, err, so = "timeout", "", ""
                runs += 1
                why = None
                diverged = code == 3 and ("not finite" in err or "diverged" in err)
                if code not in (0, 2) and not diverged:
                    why = f"exit {code}"
                elif code == 2 and len(err.strip().splitlines()) != 1:
                    why = "exit 2 with a message of several lines"
                elif code == 0 and bad_output(so + err):
                    why = "exit 0 with NaN, infinity or a null metric in the output"
                if not stat.S_ISCHR(os.stat("/dev/null").st_mode):
                    failures.append({"command": cmd, "option": flag, "value": v[:40],
                                     "why": "replaced /dev/null by a file", "stderr": ""})
                    sys.exit("/dev/null was replaced by a file; restore it (mknod -m 666 /dev/null c 1 3)")
                if why:
                    failures.append({"command": cmd, "option": flag, "value": v[:40], "why": why,
                                     "stderr": err.strip()[-300:]})
                shutil.rmtree(out, ignore_errors=True)
    summary = {"runs": runs, "failures": len(failures), "seconds": round(time.time() - t0, 1)}
    if a.json:
        print(json.dumps({**summary, "list": failures}))
    else:
        for x in failures:
            print(f"{x['command']} {x['option']} {x['value']!r}: {x['why']}: {x['stderr'][:200]}")
        print(f"{runs} runs, {len(failures)} failures, {summary['seconds']} s")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
