"""The torch reference: a checkpoint run in PyTorch behind a bundle's I/O contract.

The reference for parity and the baseline for bench. It needs torch and the source checkpoint, so it
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
from edgekit.errors import InputError
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
    ckpt = _checkpoint(None if manifest is None else Manifest.of(manifest))
    if not ckpt or not Path(ckpt).is_dir():
        return f"the source checkpoint is not available ({ckpt})"
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "torch sees no CUDA GPU"
    return None


def _open(
    device: str, graph: bool, bundle: Path, manifest: Manifest | Mapping[str, Any], options: Any
) -> Any:
    from edgekit.reference.torch_backend import TorchBackend

    checkpoint = _checkpoint(Manifest.of(manifest))
    if checkpoint is None:  # as unavailable_reason says
        raise InputError(f"the source checkpoint is not available ({checkpoint})")
    return TorchBackend.from_checkpoint(checkpoint, device, threads=options.threads, graph=graph)


def _weights_bytes(bundle: Path, manifest: Manifest | Mapping[str, Any]) -> int:
    checkpoint = _checkpoint(Manifest.of(manifest))
    if checkpoint is None:
        return 0
    weights = Path(checkpoint) / "weights.safetensors"
    return weights.stat().st_size if weights.exists() else 0


for _name, _device, _graph, _rank, _summary in (
    ("torch", "cpu", False, 0, "PyTorch eager on the CPU: the source checkpoint itself"),
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
