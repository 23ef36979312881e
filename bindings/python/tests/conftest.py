"""Small models of every task, trained once per session through the Python package, on
slices of the shared corpora when RNNKIT_DATA_DIR is set and on generated text otherwise
(as the Rust end-to-end tests do). The CLI binary (RNNKIT_BIN, else the repository's
target/release/rnnkit) is what the bindings' results are compared with."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import rnnkit

ROOT = Path(__file__).resolve().parents[3]
DATA = Path(os.environ["RNNKIT_DATA_DIR"]) if os.environ.get("RNNKIT_DATA_DIR") else None


def cli_path() -> Path:
    p = Path(os.environ.get("RNNKIT_BIN", ROOT / "target" / "release" / "rnnkit"))
    if not p.is_file():
        pytest.skip(f"no rnnkit binary at {p} (cargo build --release, or set RNNKIT_BIN)")
    return p


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the CLI; with check, a failure shows its stderr."""
    r = subprocess.run([str(cli_path()), *args], capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def last_json(out: str):
    return json.loads(out.strip().splitlines()[-1])


def _lines(path: Path, n: int) -> str:
    with open(path, encoding="utf-8") as f:
        return "".join(line for _, line in zip(range(n), f))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict:
    """Training files for every task."""
    d = tmp_path_factory.mktemp("corpus")
    files = {}
    # Language model: characters.
    if DATA and (DATA / "tinyshakespeare" / "input.txt").is_file():
        text = (DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:60_000]
    else:
        text = "".join(f"the cat {w} the dog and the bird {w}.\n" for w in ["sat", "ran", "saw"] * 400)
    cut = int(len(text) * 0.9)
    (d / "lm.train").write_text(text[:cut], encoding="utf-8")
    (d / "lm.valid").write_text(text[cut:], encoding="utf-8")
    files["lm"] = (d / "lm.train", d / "lm.valid")
    # Tagger: CoNLL.
    if DATA and (DATA / "conll2003" / "train.txt").is_file():
        conll = _lines(DATA / "conll2003" / "train.txt", 3000)
    else:
        names = ["Anna", "Boris", "Clara", "David"]
        places = ["Berlin", "Paris", "Oslo", "Rome"]
        rows = []
        for i in range(300):
            rows.append(f"{names[i % 4]} B-PER\nlives O\nin O\n{places[(i // 4) % 4]} B-LOC\n. O\n")
        conll = "\n".join(rows)
    (d / "tag.train").write_text(conll, encoding="utf-8")
    files["tag"] = (d / "tag.train", d / "tag.train")
    # Classifier: TSV with a header.
    if DATA and (DATA / "sst2" / "train.tsv").is_file():
        tsv = _lines(DATA / "sst2" / "train.tsv", 1500)
    else:
        good, bad = ["good", "great", "fine"], ["bad", "awful", "poor"]
        rows = ["sentence\tlabel"]
        for i in range(600):
            w, y = (good[i % 3], 1) if i % 2 else (bad[i % 3], 0)
            rows.append(f"a {w} film with a {w} plot\t{y}")
        tsv = "\n".join(rows) + "\n"
    (d / "cls.train").write_text(tsv, encoding="utf-8")
    files["classify"] = (d / "cls.train", d / "cls.train")
    # Translator: parallel lines.
    if DATA and (DATA / "multi30k" / "train.de").is_file():
        de = _lines(DATA / "multi30k" / "train.de", 300)
        en = _lines(DATA / "multi30k" / "train.en", 300)
    else:
        w = [("Hund", "dog"), ("Mann", "man"), ("Frau", "woman"), ("Kind", "child")]
        de = "".join(f"Ein {w[i % 4][0]} sieht einen {w[(i // 4) % 4][0]}.\n" for i in range(200))
        en = "".join(f"A {w[i % 4][1]} sees a {w[(i // 4) % 4][1]}.\n" for i in range(200))
    (d / "tr.de").write_text(de, encoding="utf-8")
    (d / "tr.en").write_text(en, encoding="utf-8")
    files["translate"] = (d / "tr.de", d / "tr.en")
    return files


# Tiny models, one thread, so that a run is reproduced bit for bit by the CLI.
TINY = {
    "lm": dict(tokenizer="char", embed=16, hidden=16, layers=1, batch_size=8, bptt=20, epochs=1, threads=1),
    "tag": dict(embed=16, hidden=16, char_dim=8, char_hidden=8, batch_size=16, epochs=1, threads=1),
    "classify": dict(embed=16, hidden=16, batch_size=32, epochs=1, min_freq=1, threads=1),
    "translate": dict(embed=16, hidden=16, decoder_hidden=16, batch_size=16, epochs=1, min_freq=1, threads=1),
}


def data_options(task: str, corpus: dict) -> dict:
    a, b = corpus[task]
    if task == "translate":
        return dict(train=(a, b), valid=(a, b))
    return dict(train=a, valid=b)


@pytest.fixture(scope="session")
def runs(corpus, tmp_path_factory) -> dict:
    """A run folder per task, trained through rnnkit.train; each with its summary."""
    out = {}
    for task, opts in TINY.items():
        folder = tmp_path_factory.mktemp(f"run-{task}")
        summary = rnnkit.train(task, out=folder, bar=False, **data_options(task, corpus), **opts)
        out[task] = (folder, summary)
    return out


@pytest.fixture(scope="session")
def models(runs) -> dict:
    return {task: rnnkit.load(folder / "model.safetensors") for task, (folder, _) in runs.items()}
