"""Bad input raises a Python exception with a clear message; the interpreter goes on."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import rnnkit


def test_wrong_types(models):
    lm, clf, tr, tag = models["lm"], models["classify"], models["translate"], models["tag"]
    with pytest.raises(TypeError, match="prompts"):
        lm.generate(42)
    with pytest.raises(TypeError, match="texts"):
        clf.classify([1, 2])
    with pytest.raises(TypeError):
        tr.translate(b"bytes")
    with pytest.raises(TypeError):
        tag.tag([["ok"], 3])
    with pytest.raises(TypeError):
        lm.generate("x", max_tokens="ten")
    with pytest.raises(TypeError):
        rnnkit.load(3.5)


def test_empty_lists_and_bad_numbers(models):
    lm, clf, tr = models["lm"], models["classify"], models["translate"]
    for call in (lambda: lm.generate([]), lambda: clf.classify([]), lambda: tr.translate([]), lambda: lm.score([])):
        with pytest.raises(rnnkit.RnnkitError, match="empty"):
            call()
    with pytest.raises(rnnkit.RnnkitError, match="temperature"):
        lm.generate("x", temperature=float("nan"))
    with pytest.raises(rnnkit.RnnkitError, match="top_p"):
        lm.generate("x", top_p=1.5)
    with pytest.raises(rnnkit.RnnkitError, match="max tokens"):
        lm.generate("x", max_tokens=10**12)
    with pytest.raises(OverflowError):
        lm.generate("x", max_tokens=-1)
    with pytest.raises(rnnkit.RnnkitError, match="beam"):
        tr.translate("Ein Hund", beam=0)
    with pytest.raises(rnnkit.RnnkitError, match="n_best"):
        tr.translate("Ein Hund", beam=2, n_best=3)
    with pytest.raises(rnnkit.RnnkitError, match="two tokens"):
        lm.score("a")
    with pytest.raises(rnnkit.RnnkitError, match="threads"):
        rnnkit.set_threads(0)
    with pytest.raises(rnnkit.RnnkitError, match="precision"):
        rnnkit.set_precision("f16")


def test_text_that_is_not_utf8(models):
    # A lone surrogate (what surrogateescape makes of invalid UTF-8 bytes) has no UTF-8.
    with pytest.raises(UnicodeEncodeError):
        models["lm"].generate("bad \udcff byte")
    # Text that is valid but unusual works: emoji, combining marks, right-to-left.
    assert isinstance(models["classify"].classify("ok 😀 é שלום")[0], str)


def test_missing_deleted_and_foreign_files(tmp_path, runs):
    with pytest.raises(rnnkit.RnnkitError, match="nope.safetensors"):
        rnnkit.load(tmp_path / "nope.safetensors")
    p = tmp_path / "copy.safetensors"
    shutil.copy(runs["lm"][0] / "model.safetensors", p)
    m = rnnkit.load(p)
    p.unlink()
    # A loaded model lives in memory: it goes on working without its file.
    assert isinstance(m.generate("the ", max_tokens=5), str)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(rnnkit.RnnkitError, match="bad.safetensors"):
        rnnkit.load(bad)
    text = tmp_path / "config.json"
    text.write_text("{}")
    with pytest.raises(rnnkit.RnnkitError, match="config.json"):
        rnnkit.load(text)


def test_read_conll_bad_files(tmp_path):
    with pytest.raises(rnnkit.RnnkitError, match="nope.conll"):
        rnnkit.read_conll(tmp_path / "nope.conll")
    empty = tmp_path / "empty.conll"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(rnnkit.RnnkitError, match="empty.conll:1"):
        rnnkit.read_conll(empty)
    binary = tmp_path / "binary.conll"
    binary.write_bytes(b"Anna B-PER\n\xff\xfe O\n")
    with pytest.raises(rnnkit.RnnkitError, match="binary.conll:2"):
        rnnkit.read_conll(binary)
    with pytest.raises(TypeError):
        rnnkit.read_conll(42)


def test_threads_and_precision_settings():
    n = rnnkit.threads()
    rnnkit.set_threads(1)
    assert rnnkit.threads() == 1
    rnnkit.set_threads(n)
    rnnkit.set_precision("f32")


def test_array_shapes_are_numpy(models):
    t = models["lm"].trace("the cat sat")
    assert isinstance(t["output"], np.ndarray) and t["output"].ndim == 2
