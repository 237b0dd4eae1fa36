"""Real data for a zoo model, rebuilt from its data description (when the data is still there).

Export parity replays a few held-out inputs; `edgekit quantize` calibrates on the training split and
measures task accuracy on the held-out split. Both come from `data_split`, which rebuilds the split
exactly as training drew it (same source, same seed), so "held out" means the same rows everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.models.registry import MODELS

Sample = tuple[str, dict[str, np.ndarray]]
TEXT_WINDOW = 64  # characters per held-out text row


@dataclass
class Split:
    """Feeds are batch-first and ready for the graph (preprocessed exactly as the runtime does)."""

    train: dict[str, np.ndarray]  # calibration rows (from the training split)
    test: dict[str, np.ndarray]  # held-out rows
    targets: np.ndarray | None  # held-out class ids or regression targets; None for text
    noun: str  # what a held-out row is, e.g. "test images"
    text: np.ndarray | None = None  # language models: the whole held-out text as token ids (N,)

    def label(self, rows: int | None = None) -> str:
        """How held-out rows are named in reports, e.g. "real data (360 test images)"."""
        if self.text is not None:
            return f"real text (1 x {TEXT_WINDOW} {self.noun})"
        return f"real data ({rows if rows is not None else len(self.test_rows())} {self.noun})"

    def test_rows(self) -> np.ndarray:
        return next(iter(self.test.values()))


def meta_of_manifest(manifest: Manifest) -> dict[str, Any] | None:
    """The checkpoint metadata `data_split` needs, as a bundle's manifest keeps it (zoo bundles)."""
    source = manifest.source
    if source is None or source.data is None:
        return None  # a user module: no data description
    return {
        "model": manifest.model,
        "data": source.data,
        "preprocess": manifest.preprocess,
        "vocab": None if manifest.vocab is None else list(manifest.vocab),
    }


def data_split(meta: dict[str, Any], build: Any = None) -> Split:
    """Raises InputError (or OSError) when the data described is gone or unreadable. `build`: the
    model spec's split builder (default: looked up by the model's name)."""
    source = str(meta["data"].get("source", ""))
    model = meta["model"]
    entry = MODELS.get(model)
    if build is None and entry is not None:
        build = entry.spec.data_split_builder()
    if build is None:
        raise InputError(f"no real data for model {model}")
    split: Split = build(meta, source)
    return split


def real_samples(
    meta: dict[str, Any], build: Any = None, count: int = 8
) -> tuple[list[Sample], str]:
    """Up to `count` real inputs as feeds (text: one row), and a note (empty, or why none)."""
    source = str(meta["data"].get("source", ""))
    try:
        split = data_split(meta, build)
    except (InputError, OSError) as exc:
        if "no real data for model" in str(exc):
            return [], str(exc)
        return [], f"real data unavailable ({source}): {exc}"
    if split.text is not None:
        return [(split.label(), split.test)], ""
    # held-out rows first; a small set is topped up from the training split (parity wants real
    # inputs, not unseen ones)
    rows = {
        k: np.concatenate([v[:count], split.train[k][: max(0, count - len(v))]])
        for k, v in split.test.items()
    }
    return [(split.label(len(next(iter(rows.values())))), rows)], ""


def table_split(meta: dict[str, Any], source: str) -> Split:
    from edgekit.data import tabular

    table = (
        tabular.builtin_table(meta["model"])
        if source.startswith("builtin:")
        else (tabular.read_csv_table(source))
    )
    # the seed tables have 7-8 rows and no held-out split: the whole table serves both roles
    feeds = {"features": table.x}
    return Split(feeds, feeds, table.y, "rows")


def digit_split(meta: dict[str, Any], source: str) -> Split:
    from edgekit.data import digits

    d = (
        digits.builtin_digits(meta["data"]["split_seed"])
        if source.startswith("builtin:")
        else (digits.read_npz(source))
    )

    def scaled(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32)[:, None] / np.float32(255.0)  # (N, 1, H, W)

    return Split(
        {"image": scaled(d.x_train)},
        {"image": scaled(d.x_test)},
        d.y_test,
        "test images",
    )


def image_split(meta: dict[str, Any], source: str) -> Split:
    from edgekit.data import images
    from edgekit.preprocess import preprocess_images

    spec, data = meta["preprocess"], meta["data"]
    if source.startswith("builtin:"):
        ds = images.synthetic_shapes(int(data["images"]), spec["resize"][0], data["seed"])
    else:
        if not Path(source).is_dir():
            raise InputError(f"{source} no longer exists")
        ds = images.read_image_folder(source)
    # the training split: a permutation by split_seed, the first fifth held out
    order = np.random.default_rng(data.get("split_seed", data.get("seed", 0))).permutation(
        len(ds.images)
    )
    held = order[: max(1, len(order) // 5)]
    train = order[len(held) :]
    labels = np.asarray(ds.labels, np.int64)
    return Split(
        {"image": preprocess_images([ds.images[i] for i in train], spec)},
        {"image": preprocess_images([ds.images[i] for i in held], spec)},
        labels[held],
        "images",
    )


def text_split(meta: dict[str, Any], source: str) -> Split:
    from edgekit.data import text

    corpus = text.builtin_corpus() if source.startswith("builtin:") else text.read_corpus(source)
    vocab = {ch: i for i, ch in enumerate(meta["vocab"])}
    used = corpus.text[: meta["data"]["used_chars"]]
    cut = int(len(used) * 0.95)  # training held out the last 5%

    def ids_of(chars: str) -> np.ndarray:
        return np.array([vocab[ch] for ch in chars if ch in vocab], np.int64)

    held_out, train = ids_of(used[cut:]), ids_of(used[:cut])
    if len(held_out) < TEXT_WINDOW:
        raise InputError("the held-out text is too short")
    windows = len(train) // TEXT_WINDOW
    pick = np.linspace(0, windows - 1, num=min(windows, 64)).astype(np.int64) * TEXT_WINDOW
    return Split(
        {"tokens": np.stack([train[s : s + TEXT_WINDOW] for s in pick])},  # (<=64, 64)
        {"tokens": held_out[None, :TEXT_WINDOW]},  # (1, 64)
        None,
        "held-out chars",
        text=held_out,
    )
