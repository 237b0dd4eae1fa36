"""Real inputs for parity, rebuilt from a checkpoint's data description (when still available)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputError

Sample = tuple[str, dict[str, np.ndarray]]


def real_samples(meta: dict[str, Any], count: int = 8) -> tuple[list[Sample], str]:
    """Up to `count` real inputs as feeds, and a note (empty, or why there are none)."""
    source = str(meta["data"].get("source", ""))
    model = meta["model"]
    try:
        if model in ("linear", "logistic"):
            return _tables(meta, source, count), ""
        if model in ("lenet", "rowlstm"):
            return _digits(meta, source, count), ""
        if model == "cnn":
            return _images(meta, source, count), ""
        if model == "charlm":
            return _text(meta, source), ""
    except (InputError, OSError) as exc:
        return [], f"real data unavailable ({source}): {exc}"
    return [], f"no real data for model {model}"


def _tables(meta: dict[str, Any], source: str, count: int) -> list[Sample]:
    from edgekit.data import tabular

    table = (
        tabular.builtin_table(meta["model"])
        if source.startswith("builtin:")
        else (tabular.read_csv_table(source))
    )
    return [(f"real data ({len(table.x[:count])} rows)", {"features": table.x[:count]})]


def _digits(meta: dict[str, Any], source: str, count: int) -> list[Sample]:
    from edgekit.data import digits

    d = (
        digits.builtin_digits(meta["data"]["split_seed"])
        if source.startswith("builtin:")
        else (digits.read_npz(source))
    )
    x = d.x_test[:count].astype(np.float32)[:, None] / np.float32(255.0)  # (N, 1, 28, 28)
    return [(f"real data ({len(x)} test images)", {"image": x})]


def _images(meta: dict[str, Any], source: str, count: int) -> list[Sample]:
    from edgekit.data import images
    from edgekit.preprocess import preprocess_images

    spec = meta["preprocess"]
    if source.startswith("builtin:"):
        ds = images.synthetic_shapes(count, spec["resize"][0], meta["data"]["seed"])
    else:
        if not Path(source).is_dir():
            raise InputError(f"{source} no longer exists")
        ds = images.read_image_folder(source)
    x = preprocess_images(ds.images[:count], spec)
    return [(f"real data ({len(x)} images)", {"image": x})]


def _text(meta: dict[str, Any], source: str) -> list[Sample]:
    from edgekit.data import text

    corpus = text.builtin_corpus() if source.startswith("builtin:") else text.read_corpus(source)
    vocab = {ch: i for i, ch in enumerate(meta["vocab"])}
    held_out = corpus.text[: meta["data"]["used_chars"]][int(meta["data"]["used_chars"] * 0.95) :]
    ids = [vocab[ch] for ch in held_out[:128] if ch in vocab]
    if len(ids) < 64:
        raise InputError("the held-out text is too short")
    tokens = np.array([ids[:64]], dtype=np.int64)  # (1, 64)
    return [("real text (1 x 64 held-out chars)", {"tokens": tokens})]
