"""Held-out and calibration data for a variant: the model's own split, a file, or golden records."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.directory import Bundle
from edgekit.bundle.io import IOContract
from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.exporters.quantize import recipes
from edgekit.exporters.samples import Split, data_split, meta_of_manifest

CALIBRATION_ROWS = 128


def data_split_of(manifest: Manifest | Mapping[str, Any]) -> tuple[Split | None, str]:
    meta = meta_of_manifest(Manifest.of(manifest))
    if meta is None:
        return None, "no data description (a user module): golden records and --calibration only"
    try:
        split = data_split(meta)
    except (InputError, OSError) as exc:
        return None, f"the model's data is unavailable ({exc}): golden records only"
    return split, f"held-out: {split.label()}; calibration: the training split"


def calibration_batches(
    split: Split | None,
    file: Path | None,
    contract: IOContract,
    bundle: Path,
    manifest: Manifest,
) -> list[dict[str, np.ndarray]]:
    """Calibration feeds in batches of 16: --calibration, else the training split, else the
    golden records' real inputs. Empty when there is nothing real (static int8 then refuses)."""
    names = [t.name for t in contract.inputs if t.name not in {p.input for p in contract.state}]
    if file is not None:
        rows = read_calibration(file, contract)
    elif split is not None:
        rows = split.train
    else:
        golden = Bundle(bundle, manifest).golden_arrays()
        rows = {n: v for k, v in golden.items() for n in names if k.endswith(f"/in/{n}")}
        if len(rows) != len(names):
            return []
    count = min(len(v) for v in rows.values())
    # spread over the split, not its first rows (which may all be one class)
    pick = np.linspace(0, count - 1, num=min(count, CALIBRATION_ROWS)).astype(np.int64)
    state = contract.zero_state(16)
    return [
        {
            **{k: v[s : s + 16] for k, v in state.items()},
            **{n: rows[n][pick[s : s + 16]] for n in names},
        }
        for s in range(0, len(pick), 16)
        if len(pick[s : s + 16]) == 16 or not state
    ]


MAX_CALIBRATION_BYTES = 1 << 30  # what --calibration may hold once read


def _declared(file: Path) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
    """Each array's shape and dtype from its .npy header, read before any of its data is."""
    import zipfile

    found = {}
    with zipfile.ZipFile(file) as archive:
        for info in archive.infolist():
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(f)
            found[info.filename.removesuffix(".npy")] = (tuple(shape), np.dtype(dtype))
    return found


def read_calibration(file: Path, contract: IOContract) -> dict[str, np.ndarray]:
    """The arrays of a --calibration .npz, one per (non-state) input, checked against the contract:
    names, shapes, dtypes and size from the headers first (a small file may decompress to
    gigabytes), then every value finite."""
    specs = {t.name: t for t in contract.inputs if t.name not in {p.input for p in contract.state}}
    import zipfile

    try:
        declared = _declared(file)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"--calibration {file}: not a readable .npz ({exc})") from None
    size = sum(
        int(np.prod(shape, dtype=object)) * dtype.itemsize for shape, dtype in declared.values()
    )
    if size > MAX_CALIBRATION_BYTES:
        raise InputError(
            f"--calibration {file}: its arrays hold {size} bytes, more than "
            f"{MAX_CALIBRATION_BYTES}; calibration needs a few hundred rows"
        )
    try:
        with np.load(file, allow_pickle=False) as npz:
            rows = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"--calibration {file}: not a readable .npz ({exc})") from None
    if sorted(rows) != sorted(specs):
        raise InputError(
            f"--calibration {file}: has arrays {sorted(rows)}, expected the inputs {sorted(specs)}"
        )
    for name, spec in specs.items():
        a = rows[name]
        fixed_ok = len(a.shape) == len(spec.shape) and all(
            isinstance(d, str) or d == n for d, n in zip(spec.shape, a.shape, strict=True)
        )
        if not fixed_ok or a.dtype != np.dtype(spec.dtype) or a.shape[0] == 0:
            raise InputError(
                f"--calibration {file}: {name} is {a.dtype} {list(a.shape)}, expected "
                f"{spec.dtype} {list(spec.shape)} with at least one row"
            )
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise InputError(
                f"--calibration {file}: {name} has NaN or infinite values; calibration ranges "
                "need finite inputs"
            )
    return rows


def held_out_from(file: Path, contract: IOContract) -> Split:
    """Without the model's own data, its --calibration rows are what the gates measure on."""
    rows = read_calibration(file, contract)
    return Split(rows, rows, None, f"rows of {file.name} (no labels: agreement with fp32)")


def calibration_note(
    recipe: recipes.Recipe,
    batches: list[dict[str, np.ndarray]],
    file: Path | None,
    split: Split | None,
) -> str | None:
    if recipe.mode != "static":
        return None
    rows = sum(len(next(iter(b.values()))) for b in batches)
    where = (
        str(file)
        if file
        else ("the training split" if split else "the golden records' real inputs")
    )
    return f"{rows} rows from {where}, MinMax"
