"""State dicts, pickling, training from Python against the CLI, interrupting and resuming."""

from __future__ import annotations

import json
import pickle
import signal
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

import rnnkit
from conftest import TINY, cli, data_options, last_json


def safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def test_state_dict_has_the_files_names_and_shapes(models, runs):
    for task, m in models.items():
        sd = m.state_dict()
        header = safetensors_header(runs[task][0] / "model.safetensors")
        header.pop("__metadata__")
        assert {k: list(v.shape) for k, v in sd.items()} == {k: v["shape"] for k, v in header.items()}
        assert all(v.dtype == np.float32 for v in sd.values())
    assert "rnn.weight_ih_l0" in models["lm"].state_dict()


def test_from_state_dict_rebuilds_the_model(models, tmp_path):
    lm = models["lm"]
    back = rnnkit.from_state_dict(lm.state_dict(), lm.metadata, tmp_path / "back.safetensors")
    assert back.generate("the ", max_tokens=30, seed=4) == lm.generate("the ", max_tokens=30, seed=4)
    sd = lm.state_dict()
    sd["rnn.weight_ih_l0"] = sd["rnn.weight_ih_l0"][:-1]
    with pytest.raises(rnnkit.RnnkitError, match="rnn.weight_ih_l0"):
        rnnkit.from_state_dict(sd, lm.metadata)
    sd = lm.state_dict()
    sd["decoder.bias"][0] = np.nan
    with pytest.raises(rnnkit.RnnkitError, match="finite"):
        rnnkit.from_state_dict(sd, lm.metadata)
    with pytest.raises(TypeError):
        rnnkit.from_state_dict({"decoder.bias": "text"}, lm.metadata)


def test_pickle_round_trip_and_another_process(models, tmp_path):
    for m in models.values():
        back = pickle.loads(pickle.dumps(m))
        assert type(back) is type(m)
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(back.state_dict()[k], v)
    lm = models["lm"]
    f = tmp_path / "lm.pkl"
    f.write_bytes(pickle.dumps(lm))
    code = f"import pickle; m = pickle.load(open({str(f)!r}, 'rb')); print(m.generate('the ', max_tokens=25, seed=8))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.rstrip("\n") == lm.generate("the ", max_tokens=25, seed=8)


def test_training_from_python_equals_the_cli(runs, corpus, tmp_path):
    for task in ("lm", "classify"):
        folder, summary = runs[task]
        assert json.loads((folder / "summary.json").read_text()) == {k: v for k, v in summary.items() if k != "out"}
        args = [task, "train", "--out", str(tmp_path / task), "--json", "--quiet"]
        for k, v in {**data_options(task, corpus), **TINY[task]}.items():
            args += [f"--{k.replace('_', '-')}", *map(str, v if isinstance(v, tuple) else [v])]
        theirs = last_json(cli(*args).stdout)
        for k in summary:
            if k.startswith(("valid_", "test_")) or k in ("tokens", "sentences", "params", "epochs_done"):
                assert summary[k] == theirs[k], (task, k)


def test_bad_training_options_raise(tmp_path, corpus):
    with pytest.raises(rnnkit.RnnkitError, match="hiden"):
        rnnkit.train("lm", out=tmp_path / "a", train=corpus["lm"][0], hiden=3, bar=False)
    with pytest.raises(rnnkit.RnnkitError, match="learning rate"):
        rnnkit.train("lm", out=tmp_path / "b", train=corpus["lm"][0], lr=float("nan"), bar=False)
    with pytest.raises(rnnkit.RnnkitError, match="task"):
        rnnkit.train("speech", out=tmp_path / "c")
    with pytest.raises(rnnkit.RnnkitError, match="--out"):
        rnnkit.train("lm", train=corpus["lm"][0], bar=False)


def test_interrupt_saves_and_the_cli_resumes(tmp_path, corpus):
    """KeyboardInterrupt (a real one, raised in the main thread while training) saves the
    state and stops; the CLI then finishes the run."""
    folder = tmp_path / "run"
    opts = {**data_options("lm", corpus), **TINY["lm"], "epochs": 3}
    seen = []

    def progress(event):
        seen.append(event["event"])
        if event["event"] == "step" and event["step"] == 5:
            import _thread

            _thread.interrupt_main()

    # A shell that starts a job in the background (`cmd &`, as nohup runs CI) leaves SIGINT
    # ignored, and then interrupt_main does nothing: Ctrl-C is handled as an interactive
    # interpreter handles it.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt, match="resume"):
            rnnkit.train("lm", out=folder, progress=progress, bar=False, **opts)
    finally:
        signal.signal(signal.SIGINT, old)
    assert (folder / "train_state.safetensors").is_file()
    assert "start" in seen
    out = last_json(cli("lm", "train", "--resume", str(folder), "--json", "--quiet").stdout)
    assert out["epochs_done"] == 3
    # The interrupted and resumed run ends with the weights of an uninterrupted one.
    whole = tmp_path / "whole"
    rnnkit.train("lm", out=whole, bar=False, **opts)
    a = rnnkit.load(folder / "model.safetensors").state_dict()
    b = rnnkit.load(whole / "model.safetensors").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # And the same run, resumed from Python, trains on to a fourth epoch.
    more = rnnkit.train("lm", resume=folder, epochs=4, bar=False)
    assert more["epochs_done"] == 4


def test_a_callback_error_stops_the_run_and_is_raised(tmp_path, corpus):
    def progress(event):
        if event["event"] == "step":
            raise ValueError("stop here")

    with pytest.raises(ValueError, match="stop here"):
        rnnkit.train("lm", out=tmp_path / "r", progress=progress, bar=False,
                     **data_options("lm", corpus), **TINY["lm"])


def test_verbs_release_the_gil(models):
    """A Python thread runs while generate computes."""
    lm = models["lm"]
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(1)

    t = threading.Thread(target=count)
    t.start()
    try:
        before = len(ticks)
        lm.generate("the ", max_tokens=3000, seed=1)
        during = len(ticks) - before
    finally:
        done.set()
        t.join()
    assert during > 1000
