"""Planning an export: a zoo checkpoint or a user's nn.Module -> what to export and how to check it.

A Plan holds the module (also the torch reference), its I/O contract, the manifest fields that
describe it, and the real inputs parity should replay. Nothing is written here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgekit.errors import InputError
from edgekit.exporters.samples import Sample, real_samples
from edgekit.iospec import IOContract, StatePair, TensorSpec, contract_for, head_for
from edgekit.models.flat import export_module

# fp32 tolerances. Torch (oneDNN) and ONNX Runtime (MLAS) sum in different orders and fuse
# differently, which moves fp32 results by ~1e-6 relative per layer; deep conv stacks and long
# recurrences accumulate that to ~1e-5. atol 1e-4 / rtol 1e-3 leaves a 10x margin over what we
# measure, and still catches real export bugs (a wrong GRU gate layout differs by ~1e-1).
DEFAULT_ATOL, DEFAULT_RTOL = 1e-4, 1e-3
TOLERANCE = {"linear": (1e-3, 1e-4)}  # outputs in the hundreds: rtol carries the check
EXPORT_BATCH, EXPORT_TIME = 2, 3  # >= 2 each, or torch.export specialises the axis


@dataclass
class Plan:
    """What to export and how to check it, for a zoo checkpoint or a user's module."""

    module: torch.nn.Module
    contract: IOContract
    manifest: dict[str, Any]  # task, model, labels, vocab, preprocess, head, source
    real: list[Sample]
    real_note: str
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL


def plan_from_checkpoint(checkpoint: str | Path) -> Plan:
    from edgekit.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.meta
    real, note = real_samples(meta)
    atol, rtol = TOLERANCE.get(meta["model"], (DEFAULT_ATOL, DEFAULT_RTOL))
    return Plan(
        module=export_module(ckpt.build(), meta),
        contract=contract_for(meta),
        manifest={
            "task": meta["task"],
            "model": {"name": meta["model"], "config": meta["config"]},
            "head": head_for(meta),
            "labels": meta.get("labels"),
            "vocab": meta.get("vocab"),
            "preprocess": meta.get("preprocess"),
            "columns": meta.get("columns"),
            "source": {
                "checkpoint": str(ckpt.path.resolve()),
                "sha256": ckpt.sha256,
                "data": meta["data"],
                "metrics": meta["metrics"],
            },
        },
        real=real,
        real_note=note,
        atol=atol,
        rtol=rtol,
    )


def plan_from_module(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    state_pairs: list[tuple[str, str]] | None = None,
    task: str = "generic",
    labels: list[str] | None = None,
    vocab: list[str] | None = None,
    preprocess: dict[str, Any] | None = None,
) -> Plan:
    """A user's module: its contract is read from one run on the example inputs."""
    module = module.eval()
    if len(example_inputs) != len(input_names):
        raise InputError(f"{len(example_inputs)} example inputs but {len(input_names)} input names")
    axes = dynamic_axes or {}
    with torch.no_grad():
        outs = module(*example_inputs)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    if len(outs) != len(output_names):
        raise InputError(
            f"the module returns {len(outs)} outputs but {len(output_names)} names were given"
        )

    def spec(name: str, t: torch.Tensor) -> TensorSpec:
        dims = axes.get(name, {})
        shape = tuple(dims.get(i, int(s)) for i, s in enumerate(t.shape))
        return TensorSpec(name, str(t.detach().numpy().dtype), shape)

    pairs = [StatePair(i, o) for i, o in (state_pairs or [])]
    token = next(
        (n for n, t in zip(input_names, example_inputs, strict=True) if t.dtype == torch.int64),
        None,
    )
    contract = IOContract(
        [spec(n, t) for n, t in zip(input_names, example_inputs, strict=True)],
        [spec(n, t) for n, t in zip(output_names, outs, strict=True)],
        pairs,
        token if pairs else None,
        len(vocab) if vocab else 0,
    )
    if pairs and not contract.vocab_size:
        contract.vocab_size = (
            int(max(int(t.max()) for t in example_inputs if t.dtype == torch.int64)) + 1
        )
    return Plan(
        module,
        contract,
        {
            "task": task,
            "model": {"name": type(module).__name__, "config": None},
            "head": None,
            "labels": labels,
            "vocab": vocab,
            "preprocess": preprocess,
            "source": {"module": type(module).__qualname__, "sha256": module_digest(module)},
        },
        [],
        "no real data for a user module",
    )


def module_digest(module: torch.nn.Module) -> str:
    """sha256 over the module's state dict (names and bytes), to tie a bundle to its weights."""
    digest = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        digest.update(k.encode())
        digest.update(v.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
