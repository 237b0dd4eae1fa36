"""The seed tables (embedded) and CSV tables: features in every column but the last, target last."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import InputError
from edgekit.files import require_file, sha256_file

# Seed table 1: temperature (deg C), price (yuan) -> units sold.
SALES_X = [[10, 3], [20, 3], [25, 3], [28, 2.5], [30, 2], [35, 2.5], [40, 2.5]]
SALES_Y = [60, 85, 100, 120, 140, 145, 163]
# Seed table 2: temperature (deg C) -> goes out (1) or stays in (0).
OUTING_X = [[-10], [3], [-3], [5], [-4], [7], [-6], [8]]
OUTING_Y = [0, 1, 0, 1, 0, 1, 0, 1]


@dataclass
class Table:
    x: np.ndarray  # (N, F) float32
    y: np.ndarray  # (N,) float32
    columns: list[str]  # feature names then target name
    description: dict


def builtin_table(model: str) -> Table:
    if model == "linear":
        return Table(
            np.array(SALES_X, np.float32),
            np.array(SALES_Y, np.float32),
            ["temperature", "price", "sales"],
            {"source": "builtin:seed-sales", "rows": 7},
        )
    return Table(
        np.array(OUTING_X, np.float32),
        np.array(OUTING_Y, np.float32),
        ["temperature", "goes_out"],
        {"source": "builtin:seed-outing", "rows": 8},
    )


def read_csv_table(path: str | Path) -> Table:
    """A CSV with a header row; every column numeric; the last column is the target."""
    path = require_file(path, "CSV table")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 3:
        raise InputError(
            f"{path}: expected a header row and at least 2 data rows, got {max(len(rows) - 1, 0)} data row(s)"
        )
    header, body = rows[0], [r for r in rows[1:] if r]
    if len(header) < 2:
        raise InputError(
            f"{path}: expected at least 2 columns (features..., target), got {len(header)}"
        )
    try:
        data = np.array([[float(v) for v in r] for r in body], dtype=np.float32)
    except ValueError as exc:
        raise InputError(f"{path}: every value must be a number ({exc})") from None
    if data.ndim != 2 or data.shape[1] != len(header):
        raise InputError(f"{path}: every row must have {len(header)} values like the header")
    desc = {"source": str(path.resolve()), "sha256": sha256_file(path), "rows": len(body)}
    return Table(data[:, :-1], data[:, -1], header, desc)
