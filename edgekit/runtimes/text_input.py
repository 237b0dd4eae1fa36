"""Token inputs for classifiers: text through the bundle's vocabulary, or token ids, batched by length.

Sequences of different lengths are never padded (padding changes what a recurrent or pooled model
computes); each group of equal length is one call, and the rows come back in the caller's order.
An integer input whose name contains "mask" is filled with ones (every token is real).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgekit.bundle.io import BATCH, TIME, IOContract, TensorSpec
from edgekit.bundle.vocab import Vocabulary
from edgekit.errors import InputError
from edgekit.runtimes.base import Backend


class TextInput:
    """How a classifier with an integer token input turns text or ids into feeds."""

    def __init__(self, contract: IOContract, vocab: Vocabulary | Sequence[str] | None) -> None:
        self.contract = contract
        self.tokens: TensorSpec = next(t for t in contract.inputs if _is_int(t))
        others = [t for t in contract.inputs if t.name != self.tokens.name]
        self.masks = [t.name for t in others if _is_int(t) and "mask" in t.name.lower()]
        rest = [t.name for t in others if t.name not in self.masks]
        if rest:
            raise InputError(
                f"this classifier also takes {rest}: predict() fills token ids and masks only; "
                "run such a bundle with .backend.run(feeds)"
            )
        batch = contract.role_axis(BATCH)
        dims = [d for d in self.tokens.shape if isinstance(d, str) and d != batch]
        time = (
            contract.role_axis(TIME) if contract.role_axis(TIME) in dims else next(iter(dims), None)
        )
        if batch not in self.tokens.shape or time is None:
            raise InputError(
                f"{self.tokens.name} needs a batch and a length axis, got {list(self.tokens.shape)}"
            )
        self.axes = (self.tokens.shape.index(batch), self.tokens.shape.index(time))
        self.vocabulary = vocab if isinstance(vocab, Vocabulary) else Vocabulary(vocab or ())
        self.range = contract.int_range(self.tokens)

    def encode(self, text: str) -> list[int]:
        if not self.vocabulary:
            raise InputError("this bundle has no vocabulary: pass token ids, not text")
        if not self.vocabulary.pieces(text):
            raise InputError("the text is empty; give at least one token")
        return [int(i) for i in self.vocabulary.encode(text)]

    def sequences(self, x: Any) -> list[list[int]]:
        """Text, a list of texts, one id sequence, or a batch of id sequences -> id lists."""
        if isinstance(x, str):
            return [self.encode(x)]
        if isinstance(x, np.ndarray) and x.ndim in (1, 2):
            x = x.tolist()
        if not isinstance(x, Sequence) or len(x) == 0:
            raise InputError("give text, a list of texts, or token ids")
        if all(isinstance(v, (int, np.integer)) for v in x):
            x = [x]
        seqs = [self.encode(v) if isinstance(v, str) else [int(i) for i in v] for v in x]
        low, high = self.range
        for s in seqs:
            if not s or min(s) < low or max(s) >= high:
                raise InputError(f"token ids must be {low} <= id < {high}, and at least one")
        return seqs

    def run(self, backend: Backend, x: Any, output: str) -> np.ndarray:
        """The output rows for every sequence of `x`, one call per group of equal length."""
        seqs = self.sequences(x)
        rows: list[np.ndarray | None] = [None] * len(seqs)
        for length in sorted({len(s) for s in seqs}):
            which = [i for i, s in enumerate(seqs) if len(s) == length]
            ids = np.array([seqs[i] for i in which], dtype=self.tokens.dtype)  # (B, T)
            feeds = {self.tokens.name: np.ascontiguousarray(np.moveaxis(ids, (0, 1), self.axes))}
            feeds |= {name: np.ones_like(feeds[self.tokens.name]) for name in self.masks}
            out = backend.run(feeds)[output]
            for row, i in zip(out, which, strict=True):
                rows[i] = row
        return np.stack(rows)  # type: ignore[arg-type]


def _is_int(t: TensorSpec) -> bool:
    return np.issubdtype(np.dtype(t.dtype), np.integer)
