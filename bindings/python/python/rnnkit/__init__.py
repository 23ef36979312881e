"""rnnkit: recurrent neural networks (RNN, LSTM, GRU) for text, on the CPU.

Load a checkpoint written by ``rnnkit ... train`` (or by :func:`train`) and use it::

    import rnnkit
    lm = rnnkit.load("runs/char/model.safetensors")
    print(lm.generate("ROMEO:", max_tokens=100, temperature=0.8))
    trace = lm.trace("To be, or not to be")      # hidden states and gates as numpy arrays
    summary = rnnkit.train("lm", out="runs/x", train="data/train.txt", epochs=1)

Every verb takes a batch (a list) and runs it in one call without holding the GIL; a
single ``str`` gives a single result. Errors are :class:`RnnkitError` with the CLI's
one-line reason.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Dict, Mapping, Optional

from ._rnnkit import (
    Classifier,
    GenerateStream,
    LanguageModel,
    Model,
    RnnkitError,
    Tagger,
    Translator,
    __version__,
    load,
    read_conll,
    set_precision,
    set_threads,
    threads,
)
from . import _rnnkit

__all__ = [
    "Classifier",
    "GenerateStream",
    "LanguageModel",
    "Model",
    "RnnkitError",
    "Tagger",
    "Translator",
    "__version__",
    "from_state_dict",
    "load",
    "read_conll",
    "set_precision",
    "set_threads",
    "threads",
    "train",
]

TASKS = ("lm", "tag", "classify", "translate")


def _as_float32(name: str, value: Any):
    import numpy as np

    if hasattr(value, "detach"):  # a torch.Tensor
        value = value.detach().cpu().numpy()
    try:
        a = np.ascontiguousarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise TypeError(f"tensor {name}: expected an array of numbers ({e})") from None
    return a


def from_state_dict(
    state_dict: Mapping[str, Any],
    metadata: Mapping[str, Any],
    path: Optional[str | os.PathLike] = None,
) -> Model:
    """Builds a model from parameters under their PyTorch names and a checkpoint's
    metadata (``model.metadata``: task, model config, vocabularies).

    The values may be numpy arrays, torch tensors or nested lists; they are taken as
    float32. The parameters are written as a checkpoint to ``path`` (a temporary file
    when None) and loaded with the task's loader, so every name and shape is checked as
    for any file; NaN or infinite values are refused.
    """
    import json

    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata: expected a mapping (model.metadata), got {type(metadata).__name__}")
    tensors = []
    for name, value in state_dict.items():
        a = _as_float32(str(name), value)
        tensors.append((str(name), a))
    meta = json.dumps(metadata)
    if path is not None:
        return _rnnkit._from_tensors(tensors, meta, os.fspath(path))
    fd, tmp = tempfile.mkstemp(suffix=".safetensors", prefix="rnnkit-")
    os.close(fd)
    try:
        return _rnnkit._from_tensors(tensors, meta, tmp)
    finally:
        os.unlink(tmp)


def _rebuild(state_dict: Mapping[str, Any], metadata: str) -> Model:
    """Unpickles a model (see ``Model.__reduce__``)."""
    import json

    return from_state_dict(state_dict, json.loads(metadata))


def _arguments(options: Mapping[str, Any]) -> list:
    """Keyword arguments as the CLI's arguments: ``hidden=256`` is ``--hidden 256``,
    ``tied=True`` is ``--tied``, False and None are left out, a list or tuple gives its
    items (``train=("train.de", "train.en")``)."""
    args = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args.append(flag)
            args.extend(os.fspath(v) if isinstance(v, os.PathLike) else str(v) for v in value)
        else:
            args.extend([flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)])
    return args


def _tqdm_callback(user: Optional[Callable[[Dict[str, Any]], None]]):
    """A progress callback drawing a tqdm bar (when tqdm is installed) and passing each
    event on to ``user``; returns (callback, close)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return user, lambda: None
    state: Dict[str, Any] = {}

    def callback(event: Dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            state["bar"] = tqdm(total=event["total"], initial=event["step"], unit="step")
        bar = state.get("bar")
        if bar is not None and kind == "step":
            bar.update(1)
            if event["message"]:
                bar.set_postfix_str(event["message"], refresh=False)
        if user is not None:
            user(event)

    def close() -> None:
        if state.get("bar") is not None:
            state["bar"].close()

    return callback, close


def train(
    task: str,
    *,
    progress: Optional[Callable[[Dict[str, Any]], None]] = None,
    bar: bool = True,
    curves: bool = True,
    **options: Any,
) -> Dict[str, Any]:
    """Trains a model of ``task`` ("lm", "tag", "classify" or "translate") with the
    library's run, taking the options of ``rnnkit <task> train`` as keyword arguments
    under the same names (``out="runs/x"``, ``train="train.txt"``, ``hidden=256``,
    ``epochs=3``, ``resume="runs/x"``, ...) and the library's defaults for the rest.

    The run folder gets what the CLI writes (config.json, metrics.jsonl, checkpoints,
    summary.json), and resumes from Python or from the CLI. ``progress`` receives a dict
    per event (``event``: start, step, epoch or finish; ``step``, ``total``,
    ``message``); a tqdm bar is drawn when tqdm is installed and ``bar`` is true.
    Ctrl-C saves the state and stops, then raises KeyboardInterrupt naming the folder.
    Returns the run's summary (summary.json) with ``out``, the folder.
    """
    if task not in TASKS:
        raise RnnkitError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    for key in ("json", "quiet"):
        options.pop(key, None)
    callback, close = _tqdm_callback(progress) if bar else (progress, lambda: None)
    try:
        return _rnnkit._train(task, _arguments(options), callback, curves)
    finally:
        close()
