"""Type stubs of rnnkit's native module (the classes rnnkit re-exports)."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

class RnnkitError(Exception):
    """An error rnnkit reports: bad input, a bad file or option, a failed run. Its
    message is the CLI's one-line reason."""

def load(path: Union[str, os.PathLike[str]]) -> Model:
    """Loads a checkpoint of any task: a LanguageModel, Tagger, Classifier or Translator."""

def read_conll(
    path: Union[str, os.PathLike[str]], token_col: int = 0, tag_col: int = -1
) -> Tuple[List[List[str]], List[List[str]]]:
    """Reads a CoNLL-style column file with the CLI's reader: ``(tokens, tags)``, one list
    of str per sentence in each, tags as the file writes them. Columns count from 0, or
    from the end when negative; ``-DOCSTART-`` and comment lines are skipped. A malformed
    file raises RnnkitError naming its file and line."""

def set_threads(n: int) -> None:
    """Sets the threads the products run on (1 to 1024; default: every core)."""

def threads() -> int:
    """The threads the products run on."""

def set_precision(precision: str) -> None:
    """The number format of the matrix products: "f32" or "bf16"."""

def _from_tensors(
    tensors: List[Tuple[str, npt.NDArray[np.float32]]], metadata: str, path: str
) -> Model: ...
def _train(
    task: str,
    args: List[str],
    callback: Optional[Callable[[Dict[str, Any]], None]] = None,
    curves: bool = True,
) -> Dict[str, Any]: ...

class Model:
    """What every model has: its task, metadata, parameters and trace."""

    @property
    def task(self) -> str:
        """"lm", "tag", "classify" or "translate"."""
    @property
    def path(self) -> Optional[str]:
        """The checkpoint the model was loaded from."""
    @property
    def metadata(self) -> Dict[str, Any]:
        """The checkpoint's metadata: task, model (the config) and vocabs."""
    @property
    def config(self) -> Dict[str, Any]:
        """The model's config as the checkpoint records it."""
    def state_dict(self) -> Dict[str, npt.NDArray[np.float32]]:
        """Every parameter as float32 under its PyTorch name."""
    def trace(self, text: str) -> Dict[str, Any]:
        """Per token: tokens, every layer's and direction's h [T, H], c [T, H] (LSTM),
        gates [T, G, H] (LSTM, GRU), output [T, D*H], and the task's values (task)."""
    def __reduce__(self) -> Tuple[Any, ...]: ...

class LanguageModel(Model):
    """A language model."""

    @overload
    def generate(
        self,
        prompts: str,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        greedy: bool = False,
        seed: Optional[int] = None,
    ) -> str: ...
    @overload
    def generate(
        self,
        prompts: Sequence[str],
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        greedy: bool = False,
        seed: Optional[int] = None,
    ) -> List[str]:
        """Continues each prompt by up to max_tokens tokens (default 200) sampled with
        temperature (1.0), top_k (0: all), top_p (1.0) or greedily, seeded with seed (1)."""
    def stream(
        self,
        prompt: str,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        greedy: bool = False,
        seed: Optional[int] = None,
    ) -> GenerateStream:
        """Like generate for one prompt, yielding each token's text as it is drawn."""
    @overload
    def score(self, texts: str) -> float: ...
    @overload
    def score(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """Mean negative log-likelihood per token in nats, per text."""

class GenerateStream(Iterator[str]):
    """The tokens of a streamed generation."""

    def __iter__(self) -> GenerateStream: ...
    def __next__(self) -> str: ...

class Tagger(Model):
    """A named-entity tagger."""

    @property
    def labels(self) -> List[str]:
        """The tag names."""
    @overload
    def tag(self, inputs: str, probs: bool = True) -> Dict[str, Any]: ...
    @overload
    def tag(
        self, inputs: Union[Sequence[str], Sequence[Sequence[str]]], probs: bool = True
    ) -> List[Dict[str, Any]]:
        """Tags texts or token lists: tokens, offsets, tags (IOB2), probs float32 [T] and
        entities (type, start, end, char_start, char_end, text, prob); probs=False skips
        the probabilities (a second pass), leaving probs an empty read-only array."""

class Classifier(Model):
    """A sentence classifier."""

    @property
    def classes(self) -> List[str]:
        """The class names, in the order of the probabilities' columns."""
    @overload
    def classify(self, texts: str) -> Tuple[str, npt.NDArray[np.float32]]: ...
    @overload
    def classify(self, texts: Sequence[str]) -> Tuple[List[str], npt.NDArray[np.float32]]:
        """The most likely label of each text and every class's probability [N, C]."""

class Translator(Model):
    """A translator (sequence to sequence with attention)."""

    def translate(
        self,
        sentences: Union[str, Sequence[str]],
        beam: Optional[int] = None,
        alpha: Optional[float] = None,
        max_len_a: Optional[float] = None,
        max_len_b: Optional[int] = None,
        min_len: Optional[int] = None,
        n_best: int = 1,
        attention: bool = False,
        replace_unk: bool = False,
    ) -> Any:
        """The best translation of each sentence (a str for one str); with n_best > 1 or
        attention=True a dict per sentence: source_tokens and hypotheses (translation,
        tokens, score, log_prob, attention float32 [U, S]). replace_unk replaces each
        <unk> by the source word it attends to most (the CLI's --replace-unk)."""
