"""Text corpora and character vocabularies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.bundle.vocab import Vocabulary
from edgekit.errors import InputError
from edgekit.files import require_file, sha256_bytes


@dataclass
class Corpus:
    text: str
    description: dict


def builtin_corpus() -> Corpus:
    """CPython's own pydoc topic help (English prose and code, ~460k characters): no download."""
    from pydoc_data import topics

    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    return Corpus(
        text,
        {
            "source": "builtin:pydoc_data.topics",
            "chars": len(text),
            "sha256": sha256_bytes(text.encode()),
        },
    )


def read_corpus(path: str | Path) -> Corpus:
    path = require_file(path, "text corpus")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return Corpus(
        text,
        {"source": str(path.resolve()), "chars": len(text), "sha256": sha256_bytes(text.encode())},
    )


class Vocab(Vocabulary):
    """A corpus's characters <-> ids, in sorted order so the same corpus always gives the same ids
    (the bundle's Vocabulary, which export records and the runtime reads back)."""

    def __init__(self, chars: list[str]) -> None:
        super().__init__(chars)
        self.chars = list(chars)

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls(sorted(set(text)))

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.array([self.index[ch] for ch in text], dtype=np.int64)
        except KeyError as exc:
            raise InputError(f"character {exc.args[0]!r} is not in the vocabulary") from None


def check_corpus(text: str, seq_len: int) -> None:
    if len(set(text)) < 2:
        raise InputError(f"the text needs at least 2 distinct characters, got {len(set(text))}")
    # train + held-out split must each hold at least one (seq_len + 1)-long window
    need = 20 * (seq_len + 1)
    if len(text) < need:
        raise InputError(
            f"the text has {len(text)} characters; with --seq-len {seq_len} "
            f"it needs at least {need} (20 training windows)"
        )


def unigram_perplexity(train_ids: np.ndarray, eval_ids: np.ndarray, vocab_size: int) -> float:
    """Perplexity of the add-one unigram model of the training text on the evaluation text."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(np.exp(-logp[eval_ids].mean()))
