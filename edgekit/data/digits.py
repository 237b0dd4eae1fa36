"""Digit images: a `.npz` in the seed's format, or scikit-learn's bundled 8x8 digits upsampled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit._optional import require
from edgekit.errors import InputError
from edgekit.files import require_file, sha256_file


@dataclass
class Digits:
    x_train: np.ndarray  # (N, 28, 28) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    description: dict


def read_npz(path: str | Path) -> Digits:
    path = require_file(path, "digits .npz")
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise InputError(f"{path}: missing arrays {missing}; expected keys {list(keys)}")
            arrays = [data[k] for k in keys]
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz ({exc})") from None
    xtr, ytr, xte, yte = arrays
    for name, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        if x.ndim != 3 or min(x.shape) < 1:
            raise InputError(f"{path}: x_{name} must be (N, H, W) grey images, got shape {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise InputError(
                f"{path}: y_{name} must hold one label per image ({len(x)}), got shape {y.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise InputError(f"{path}: y_{name} must be integer class ids >= 0")
    if xtr.shape[1:] != xte.shape[1:]:
        raise InputError(
            f"{path}: train images are {xtr.shape[1:]} but test images are {xte.shape[1:]}"
        )
    if len(yte) and yte.max() > ytr.max():
        raise InputError(f"{path}: y_test has class {int(yte.max())}, never seen in y_train")
    desc = {
        "source": str(path.resolve()),
        "sha256": sha256_file(path),
        "train": len(xtr),
        "test": len(xte),
    }
    return Digits(
        xtr.astype(np.uint8), ytr.astype(np.int64), xte.astype(np.uint8), yte.astype(np.int64), desc
    )


def builtin_digits(seed: int = 0, test_fraction: float = 0.2) -> Digits:
    """scikit-learn's 1,797 handwritten 8x8 digits (UCI), upsampled to 28x28 uint8, split by seed."""
    datasets = require("sklearn.datasets", "the built-in digits")
    pil = require("PIL.Image", "the built-in digits")
    bunch = datasets.load_digits()
    small = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)  # (N, 8, 8), 0..16 -> 0..255
    big = np.stack(
        [np.asarray(pil.fromarray(im).resize((28, 28), pil.Resampling.BILINEAR)) for im in small]
    )
    order = np.random.default_rng(seed).permutation(len(big))
    cut = int(len(big) * (1 - test_fraction))
    tr, te = order[:cut], order[cut:]
    y = bunch.target.astype(np.int64)
    desc = {
        "source": "builtin:sklearn-digits",
        "upsampled": "8x8 -> 28x28 bilinear",
        "split_seed": seed,
        "test_fraction": test_fraction,
        "train": len(tr),
        "test": len(te),
    }
    return Digits(big[tr], y[tr], big[te], y[te], desc)
