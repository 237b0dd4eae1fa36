"""`load(bundle)`: verify a bundle's files and return the task object its manifest names."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgekit.iospec import IOContract
from edgekit.manifest import read_manifest
from edgekit.runtimes.base import Backend
from edgekit.runtimes.onnxruntime import OrtBackend

log = logging.getLogger(__name__)


class Model:
    """A bundle exported from a user's module with no known task: run named feeds."""

    task = "generic"

    def __init__(self, backend: OrtBackend, manifest: dict[str, Any]) -> None:
        self.backend = backend
        self.manifest = manifest

    def run(self, feeds: Any) -> Any:
        return self.backend.run(feeds)


def load(
    bundle: str | Path,
    device: str = "cpu",
    threads: int | None = None,
    cache_optimized: bool = False,
    cuda_graph: bool = False,
) -> Any:
    """Load a bundle on `device` ("cpu", "cuda", "tensorrt" or "auto").

    Every file is checked against the manifest's sha256 first. With `cache_optimized`, ONNX Runtime's
    optimised graph is saved to BUNDLE/.cache/ (a later load can inspect it; the bundle is unchanged).
    `cuda_graph` (device "cuda") captures the Generator's one-token step in ORT CUDA graphs. The
    TensorRT EP keeps its engines in BUNDLE/.cache/trt.
    """
    from edgekit.runtimes.classifier import Classifier, Regressor
    from edgekit.runtimes.generator import Generator

    bundle = Path(bundle)
    manifest = read_manifest(bundle, verify=True)
    contract = IOContract.from_manifest(manifest)
    optimized = None
    if cache_optimized:
        (bundle / ".cache").mkdir(exist_ok=True)
        optimized = bundle / ".cache" / f"model.{device}.optimized.onnx"
    trt_cache = bundle / ".cache" / "trt" if device in ("tensorrt", "auto") else None
    if trt_cache is not None:
        trt_cache.mkdir(parents=True, exist_ok=True)
    backend = OrtBackend(
        bundle / manifest["graph"], contract, device, threads, optimized, cuda_graph, trt_cache
    )
    if device == "auto":
        log.info("device auto -> %s", backend.device)
    tasks: dict[str, Any] = {"classify": Classifier, "regress": Regressor, "generate": Generator}
    return tasks.get(manifest["task"], Model)(backend, manifest)


__all__ = ["Backend", "Model", "load"]
