"""The TensorRT engine format both sides read: file names, compatibility records, buffer plans.

The builder (exporters/tensorrt.py) writes engines and their records; the native backend
(runtimes/tensorrt.py) picks and runs them. Plain Python and numpy, unit-tested on any machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, overload

import numpy as np

from edgekit.bundle.io import IOContract
from edgekit.bundle.manifest import Engine, Manifest
from edgekit.errors import InputError


def engine_filename(gpu: str, trt_version: str, fp16: bool) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    return f"engine.{slug}.trt{trt_version}{'.fp16' if fp16 else ''}.plan"


def plan_buffers(contract: IOContract, max_batch: int, max_seq: int) -> dict[str, int]:
    """Bytes per input/output at the profile's largest shapes: device buffers are allocated once."""
    sizes = contract.sizes(batch=max_batch, time=max_seq, at="large")
    return {
        t.name: int(np.prod(t.concrete(sizes))) * np.dtype(t.dtype).itemsize
        for t in contract.inputs + contract.outputs
    }


def check_engine_compat(
    record: Engine | Mapping[str, Any], gpu: str, compute_capability: str, trt_version: str
) -> None:
    """An engine runs only on the GPU model and TensorRT version it was built with."""
    engine = Engine.of(record)
    if not engine.fits(gpu, compute_capability, trt_version):
        raise InputError(
            f"engine {engine.file} was built for {engine.gpu} (sm {engine.compute_capability}) "
            f"with TensorRT {engine.tensorrt}; this machine has {gpu} (sm {compute_capability}) "
            f"with TensorRT {trt_version}. Rebuild it here with: edgekit engine BUNDLE"
        )


@overload
def pick_engine(manifest: Manifest, gpu: str, cc: str, trt_version: str) -> Engine: ...
@overload
def pick_engine(
    manifest: Mapping[str, Any], gpu: str, cc: str, trt_version: str
) -> dict[str, Any]: ...
def pick_engine(
    manifest: Manifest | Mapping[str, Any], gpu: str, cc: str, trt_version: str
) -> Engine | dict[str, Any]:
    """The engine built for this GPU and TensorRT version, or an error saying how to rebuild.
    Given a manifest document rather than a Manifest, the record comes back as a document too."""
    engines = Manifest.engines_of(manifest)
    if not engines:
        raise InputError("the bundle has no TensorRT engine; build one with: edgekit engine BUNDLE")
    errors = []
    for engine in engines:
        try:
            check_engine_compat(engine, gpu, cc, trt_version)
            return engine if isinstance(manifest, Manifest) else engine.to_json()
        except InputError as exc:
            errors.append(str(exc))
    raise InputError(
        errors[0] if len(errors) == 1 else "no engine fits this machine: " + " | ".join(errors)
    )


def engine_tolerance(
    record: Engine | Mapping[str, Any], atol: float, rtol: float
) -> tuple[float, float]:
    """FP16 engines keep ~3 significant digits; FP32 engines may use TF32 matmuls on Ampere and later
    (10-bit mantissa), so both get looser bounds than the fp32 ONNX graph."""
    fp16 = Engine.of(record).fp16
    return (max(atol, 1e-2), max(rtol, 1e-2)) if fp16 else (max(atol, 1e-3), max(rtol, 1e-2))
