"""Where the examples find the shared corpora (RNNKIT_DATA_DIR), and small slices of them."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def data_dir() -> Path:
    d = os.environ.get("RNNKIT_DATA_DIR")
    if not d or not Path(d).is_dir():
        sys.exit("set RNNKIT_DATA_DIR to the corpora folder (../shared/data)")
    return Path(d)


def head(path: Path, lines: int, out: Path) -> Path:
    """The first `lines` lines of `path`, written to `out`."""
    with open(path, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as w:
        for _, line in zip(range(lines), f):
            w.write(line)
    return out


def workdir(name: str) -> Path:
    """A fresh folder for an example's runs (under RNNKIT_EXAMPLES_DIR, else a temp dir)."""
    base = os.environ.get("RNNKIT_EXAMPLES_DIR") or tempfile.mkdtemp(prefix="rnnkit-")
    p = Path(base) / name
    p.mkdir(parents=True, exist_ok=True)
    return p
