"""`load(bundle)`: verify a bundle's files and return the task object its manifest names."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.bundle.directory import Bundle
from edgekit.bundle.io import IOContract
from edgekit.bundle.manifest import PRECISIONS, Manifest, Variant
from edgekit.errors import InputError
from edgekit.files import cache_dir
from edgekit.runtimes import registry
from edgekit.runtimes.base import Backend
from edgekit.runtimes.golden import SelfCheck

log = logging.getLogger(__name__)


class Model(SelfCheck):
    """A bundle exported from a user's module with no known task: run named feeds."""

    task = "generic"

    def __init__(self, backend: Backend, manifest: Manifest | Mapping[str, Any]) -> None:
        self.backend = backend
        self.manifest = Manifest.for_task("generic", backend.contract, manifest)

    def run(self, feeds: Any) -> Any:
        return self.backend.run(feeds)


def load(
    bundle: str | Path,
    device: str = "cpu",
    threads: int | None = None,
    cache_optimized: bool = False,
    cuda_graph: bool = False,
    precision: str = "fp32",
    step_graph: bool | None = None,
) -> Any:
    """Load a bundle on `device` ("cpu", "cuda", "tensorrt", "openvino" or "auto": the best GPU
    backend here, else the CPU backend measured faster for this bundle, ONNX Runtime unless
    OpenVINO is clearly faster: runtimes/choice.py), at `precision`: "fp32",
    "int8", "fp16" or "bf16" (variants made by `edgekit quantize`; bf16 on OpenVINO only), or
    "auto": on a CPU the int8 variant when it measured faster than fp32 (on OpenVINO, first the
    bf16 variant where the CPU has bf16 and it measured faster), on a GPU the fp16 variant when
    there is one, else fp32.

    The manifest is validated and every file checked against its sha256 first. With
    `cache_optimized`, ONNX Runtime's optimised graph is saved to the user cache (files.cache_dir;
    loading never writes into the bundle). `cuda_graph` (device "cuda") captures the Generator's
    one-token step in ORT CUDA graphs. The TensorRT EP keeps its engines in the same cache.
    A recurrent bundle steps on its one-token step graph where export chose it (`step_graph=None`:
    unless it measured clearly slower), `step_graph=True` on it whatever export chose, and
    `step_graph=False` on the sequence graph.
    """
    from edgekit.runtimes.classifier import Classifier, Regressor
    from edgekit.runtimes.generator import Generator

    bundle = Path(bundle)
    name = backend_for_device(device, cuda_graph)
    read = Bundle.read(bundle, verify=True).manifest
    if device == "auto" and name == "ort-cpu":  # no GPU here: the faster CPU backend, measured
        from edgekit.runtimes.choice import cpu_backend

        choice = cpu_backend(bundle, read, threads)
        name = choice["backend"]
        log.info("device auto -> %s: %s", name, choice["why"])
    if precision == "auto" and name == "openvino":
        from edgekit.runtimes.openvino import auto_precision

        precision = auto_precision(read)
    manifest = read.at(precision, registry.get(name).device)
    optimized = None
    if cache_optimized:  # beside, never inside, the bundle: it may be read-only
        optimized = cache_dir(bundle) / f"model.{device}.optimized.onnx"
    options = registry.OpenOptions(threads, optimized, step_graph=step_graph)
    backend = registry.open_backend(name, bundle, manifest, options)
    if device == "auto":
        log.info("device auto -> %s", backend.device)
    tasks: dict[str, Any] = {"classify": Classifier, "regress": Regressor, "generate": Generator}
    model = tasks.get(manifest.task, Model)(backend, manifest)
    model.bundle = bundle  # check() replays the bundle's golden records
    return model


def with_precision(
    manifest: Manifest | Mapping[str, Any], precision: str, device: str = "cpu"
) -> Manifest:
    """Deprecated: `Manifest.of(manifest).at(precision, device)`, the manifest as a backend should
    see it at `precision` (the variant's graph and tolerances)."""
    return Manifest.of(manifest).at(precision, device)


def auto_precision(variants: Mapping[str, Variant | Mapping[str, Any]], device: str) -> str:
    """Deprecated: `Manifest.auto_precision`. int8 on a CPU when it measured faster there at
    quantize time; fp16 on a GPU; else fp32. `variants`: precision -> Variant (or its record,
    of which only the gates are read)."""
    typed = tuple(Variant.of(p, v) for p, v in variants.items())
    return Manifest("generic", "", IOContract([], []), variants=typed).auto_precision(device)


# `device` as users name it -> the registry's backend; `auto` takes the first that can run here.
DEVICES = {"cpu": "ort-cpu", "cuda": "ort-cuda", "tensorrt": "ort-trt", "openvino": "openvino"}
AUTO = ("ort-trt", "ort-cuda", "ort-cpu")


def backend_for_device(device: str, cuda_graph: bool = False) -> str:
    if device == "auto":
        available = (n for n in AUTO if registry.get(n).unavailable(Path("."), None) is None)
        name = next(available, "ort-cpu")
    elif device in DEVICES:
        name = DEVICES[device]
    else:
        raise InputError(f"unknown device {device!r}; known devices: auto, {', '.join(DEVICES)}")
    if cuda_graph:
        if name != "ort-cuda":
            raise InputError(f"CUDA graphs need device 'cuda', not {device!r}")
        return "ort-cuda-graph"
    return name


__all__ = ["PRECISIONS", "Backend", "Model", "load"]
