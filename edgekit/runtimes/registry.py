"""One registry of backends: each says its name, whether it can run here (and why not), and how to
open a bundle. `load`, bench, verify and parity all ask it; a new backend is one module that calls
`register`, plus its import in `_builtin()` (or, for backends outside the runtime, in their package).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.runtimes.base import Backend


@dataclass(frozen=True)
class OpenOptions:
    threads: int | None = None  # intra-op threads; None: the runtime's default
    optimized_model: Path | None = None  # ONNX Runtime: save the optimised graph here
    trt_cache_dir: Path | None = None  # ONNX Runtime's TensorRT EP: engine cache
    # recurrent bundles: None steps on the one-token graph where export chose it, True on the one
    # the bundle has whatever export chose, False on the sequence graph
    step_graph: bool | None = None


@dataclass(frozen=True)
class BackendEntry:
    name: str  # e.g. "ort-cpu", "trt", "torch-cuda-graph"
    device: str  # "cpu" | "cuda": where it computes
    summary: str  # one line for listings
    # why it cannot run here, or None (manifest None: on this machine at all, whatever the bundle)
    unavailable: Callable[[Path, Manifest | None], str | None]
    open: Callable[[Path, Manifest, OpenOptions], Backend]
    model_bytes: Callable[[Path, Manifest], int]  # size of what it loads (graph, engine, weights)
    reference: bool = False  # the torch reference: needs torch and the source checkpoint
    runs_variants: bool = False  # opens manifest.graph: can run a bundle's int8/fp16 variants
    rank: int = 50  # listing order (the reference first, then CPU, then GPU backends)


_ENTRIES: dict[str, BackendEntry] = {}
# Modules whose import registers their backends. The torch reference lives outside `runtimes/` (it
# needs torch and checkpoints) and registers itself when `edgekit.reference` is imported.
_BUILTIN = (
    "edgekit.runtimes.onnxruntime",
    "edgekit.runtimes.openvino",
    "edgekit.runtimes.tensorrt",
)
_loaded = False


def graph_bytes(bundle: Path, manifest: Manifest | Mapping[str, Any]) -> int:
    """`model_bytes` of a backend that loads the manifest's ONNX graph."""
    return int((Path(bundle) / Manifest.of(manifest).graph).stat().st_size)


def register(entry: BackendEntry) -> None:
    _ENTRIES[entry.name] = entry


def _builtin() -> None:
    global _loaded
    if not _loaded:
        for module in _BUILTIN:  # light modules: their heavy libraries load on first use
            importlib.import_module(module)
        _loaded = True


def names() -> list[str]:
    """Every registered backend, in listing order."""
    _builtin()
    return [e.name for e in sorted(_ENTRIES.values(), key=lambda e: e.rank)]


def get(name: str) -> BackendEntry:
    _builtin()
    if name not in _ENTRIES:
        raise InputError(f"unknown backend {name!r}; known backends: {', '.join(names())}")
    return _ENTRIES[name]


def parse(text: str | None) -> list[str]:
    """A comma-separated list of backend names (None: all of them), each checked."""
    if text is None:
        return names()
    chosen = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in names()]
    if unknown or not chosen:
        raise InputError(
            f"unknown backend(s) {unknown or [text]}; known backends: {', '.join(names())}"
        )
    return chosen


def open_backend(
    name: str,
    bundle: Path,
    manifest: Manifest | Mapping[str, Any],
    options: OpenOptions | None = None,
) -> Backend:
    """Open `bundle` on backend `name`; a backend that cannot run here is an error saying why."""
    entry = get(name)
    manifest = Manifest.of(manifest)
    reason = entry.unavailable(bundle, manifest)
    if reason is not None:
        raise InputError(f"backend {name} cannot run here: {reason}")
    only = sole_runtime(manifest)
    if only is not None and only != name:
        raise InputError(
            f"the {manifest.precision} variant runs on {get(only).summary} only: load it with "
            f"device={only!r}"
        )
    return entry.open(bundle, manifest, options or OpenOptions())


def sole_runtime(manifest: Manifest) -> str | None:
    """The one backend that computes the view's variant, where only one can (a bf16 variant:
    openvino); None for fp32 and for variants any backend runs."""
    variant = manifest.variant(manifest.precision) if manifest.precision != "fp32" else None
    return variant.runtime if variant is not None else None
