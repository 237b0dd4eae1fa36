"""The torch reference: the bundle's source (a checkpoint, or the module factory `export --module`
recorded) run in PyTorch behind the bundle's I/O contract.

The reference for parity and the baseline for bench. It needs torch and the source, so it
lives outside `runtimes/` (which ships to devices without torch); importing this package registers
its backends (torch, torch-cuda, torch-cuda-graph) in the runtime's registry. torch itself loads
only when a backend is opened.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from edgekit.bundle.manifest import Manifest
from edgekit.runtimes import registry


def _checkpoint(manifest: Manifest | None) -> str | None:
    source = None if manifest is None else manifest.source
    return None if source is None else source.checkpoint


def unavailable_reason(
    device: str, bundle: Path, manifest: Manifest | Mapping[str, Any] | None
) -> str | None:
    """Why the torch reference cannot run this bundle here, or None if it can."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install 'edgekit-ml[train]')"
    if manifest is None:
        return "the bundle has no manifest"
    from edgekit.exporters.source import source_unavailable

    reason = source_unavailable(Manifest.of(manifest))
    if reason is not None:
        return reason
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "torch sees no CUDA GPU"
    return None


def _open(
    device: str, graph: bool, bundle: Path, manifest: Manifest | Mapping[str, Any], options: Any
) -> Any:
    from edgekit.exporters.source import source_plan
    from edgekit.reference.torch_backend import TorchBackend

    read = Manifest.of(manifest)
    checkpoint = _checkpoint(read)
    if checkpoint is not None:
        return TorchBackend.from_checkpoint(
            checkpoint, device, threads=options.threads, graph=graph
        )
    plan = source_plan(read)  # a user's module, from the factory its export recorded
    if options.threads is not None:
        import torch

        torch.set_num_threads(options.threads)
    return TorchBackend(plan.module, read.contract, device, graph)


def _weights_bytes(bundle: Path, manifest: Manifest | Mapping[str, Any]) -> int:
    source = Manifest.of(manifest).source
    if source is None:
        return 0
    if source.checkpoint is not None:
        weights = Path(source.checkpoint) / "weights.safetensors"
    elif source.weights is not None:
        weights = Path(source.weights)
    else:  # a seeded factory's weights live in no file
        return 0
    return weights.stat().st_size if weights.exists() else 0


for _name, _device, _graph, _rank, _summary in (
    ("torch", "cpu", False, 0, "PyTorch eager on the CPU: the source model itself"),
    ("torch-cuda", "cuda", False, 20, "PyTorch eager on an NVIDIA GPU"),
    ("torch-cuda-graph", "cuda", True, 21, "PyTorch on an NVIDIA GPU, replayed as a CUDA graph"),
):
    registry.register(
        registry.BackendEntry(
            name=_name,
            device=_device,
            summary=_summary,
            unavailable=partial(unavailable_reason, _device),
            open=partial(_open, _device, _graph),
            model_bytes=_weights_bytes,
            reference=True,
            rank=_rank,
        )
    )
