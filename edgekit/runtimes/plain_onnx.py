"""A plain `.onnx` file, not a bundle: its I/O contract read from the graph itself, so `edgekit run`,
`info` and `bench` take any ONNX model as Polygraphy does. There is no manifest: no task, no
tolerance, no golden records, no hashes to check, and no state pairs (every input is fed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.bundle.directory import Bundle
from edgekit.bundle.io import IOContract, TensorSpec
from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.runtimes.onnxruntime import ORT_TYPES, OrtBackend, ort


def is_plain_onnx(path: Path) -> bool:
    return path.is_file() and path.suffix == ".onnx"


def _spec(value: Any) -> TensorSpec:
    dtype = ORT_TYPES.get(value.type)
    if dtype is None:
        raise InputError(
            f"{value.name} is {value.type}, a type edgekit does not run (numeric tensors only)"
        )
    shape = tuple(
        d
        if isinstance(d, int) and d >= 0
        else (d if isinstance(d, str) and d else f"{value.name}.{i}")
        for i, d in enumerate(value.shape)
    )
    return TensorSpec(value.name, dtype, shape)


def contract_of(session: Any) -> IOContract:
    """The contract an ONNX Runtime session's graph declares: names, dtypes, shapes (a dimension
    without a name is named `TENSOR.AXIS`)."""
    return IOContract(
        [_spec(v) for v in session.get_inputs()], [_spec(v) for v in session.get_outputs()]
    )


def open_onnx(path: Path, threads: int | None = None) -> OrtBackend:
    """An ONNX Runtime backend (CPU) over a plain ONNX file."""
    try:
        session = ort().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # not ONNX, or a graph ONNX Runtime cannot load
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path} does not load in ONNX Runtime: {first[:300]}") from None
    return OrtBackend(path, contract_of(session), threads=threads)


def as_bundle(path: Path) -> Bundle:
    """The file as an in-memory bundle of task "generic" (nothing written), for `edgekit bench`:
    every ONNX Runtime backend opens its graph; the torch reference has no source to rebuild."""
    try:
        session = ort().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # not ONNX, or a graph ONNX Runtime cannot load
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{path} does not load in ONNX Runtime: {first[:300]}") from None
    manifest = Manifest(task="generic", graph=path.name, contract=contract_of(session),
                        model=path.stem)  # fmt: skip
    return Bundle(path.parent, manifest)


def describe(path: Path) -> dict[str, Any]:
    """What `edgekit info` shows of a plain ONNX file: its I/O, producer and size."""
    session = ort().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta()
    contract = contract_of(session)

    def tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
        return [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in specs]

    return {
        "path": str(path),
        "kind": "onnx",
        "bytes": path.stat().st_size,
        "producer": meta.producer_name,
        "graph": meta.graph_name,
        "inputs": tensors(contract.inputs),
        "outputs": tensors(contract.outputs),
        "metadata": dict(meta.custom_metadata_map),
    }
