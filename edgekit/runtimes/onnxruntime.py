"""ONNX Runtime backend: device -> execution providers, session options, plain and bound calls."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.errors import InputError
from edgekit.iospec import IOContract
from edgekit.runtimes.base import Backend

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_PREFERENCE = ("tensorrt", "cuda", "cpu")  # what `auto` tries, best first


def ort() -> Any:
    return require("onnxruntime", "running bundles")


def resolve_device(device: str) -> str:
    """`auto` -> the best available device; a requested device that is missing is an error."""
    available = ort().get_available_providers()
    if device == "auto":
        return next(d for d in _PREFERENCE if PROVIDERS[d][0] in available)
    if device not in PROVIDERS:
        raise InputError(f"unknown device {device!r}; known devices: auto, {', '.join(PROVIDERS)}")
    if PROVIDERS[device][0] not in available:
        raise InputError(
            f"device {device!r} needs {PROVIDERS[device][0]}, which this onnxruntime does not "
            f"have; available providers: {', '.join(available)} (for GPUs: pip install 'edgekit[gpu]')"
        )
    return device


def session_options(threads: int | None = None, optimized_model: Path | None = None) -> Any:
    so = ort().SessionOptions()
    so.graph_optimization_level = ort().GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: shape-inference notes are not the user's business
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if optimized_model is not None:
        so.optimized_model_filepath = str(optimized_model)
    return so


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        contract: IOContract,
        device: str = "cpu",
        threads: int | None = None,
        optimized_model: Path | None = None,
    ) -> None:
        super().__init__(contract)
        self.device = resolve_device(device)
        self.session = ort().InferenceSession(
            str(model_path),
            sess_options=session_options(threads, optimized_model),
            providers=PROVIDERS[self.device],
        )
        self.name = f"ort-{self.device}"
        self._outputs = [o.name for o in self.session.get_outputs()]

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self._outputs, dict(feeds))
        return dict(zip(self._outputs, values, strict=True))
