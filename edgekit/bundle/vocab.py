"""A bundle's one vocabulary: the token of each id, and the way back (torch-free).

Generation, classifiers with token inputs and the stop matcher all read it. A vocabulary of single
characters splits text into characters; any other splits on whitespace.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgekit.errors import InputError

UNKNOWN = ("<unk>", "[UNK]", "<UNK>")  # the names an unknown-token entry goes by


class Vocabulary:
    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.index: dict[str, int] = {tok: i for i, tok in enumerate(self.tokens)}
        self.by_chars = bool(self.tokens) and all(len(tok) == 1 for tok in self.tokens)
        self.unknown: int | None = next((self.index[u] for u in UNKNOWN if u in self.index), None)

    def __len__(self) -> int:
        return len(self.tokens)

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def pieces(self, text: str) -> list[str]:
        return list(text) if self.by_chars else text.split()

    def missing(self, text: str) -> list[str]:
        """The pieces of `text` with no id, sorted (empty when every piece has one)."""
        return sorted({p for p in self.pieces(text) if p not in self.index})

    def encode(self, text: str) -> np.ndarray:
        """(N,) int64 ids of `text`; pieces outside the vocabulary take the unknown id if any."""
        pieces = self.pieces(text)
        missing = self.missing(text)
        if missing and self.unknown is None:
            raise InputError(f"tokens not in the vocabulary: {missing[:10]} (and no <unk> token)")
        ids = (self.index.get(p, self.unknown) for p in pieces)
        return np.fromiter(ids, dtype=np.int64, count=len(pieces))

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        sep = "" if self.by_chars else " "
        return sep.join(self.tokens[int(i)] for i in ids)
