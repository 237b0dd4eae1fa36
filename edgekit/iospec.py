"""The zoo's I/O contracts by model name (kept for older imports; the I/O types live in
edgekit.bundle.io, each zoo model's contract in its spec, edgekit.models.registry)."""

from __future__ import annotations

from typing import Any

from edgekit.bundle.io import (
    BATCH,
    ROLES,
    TIME,
    Axis,
    Dim,
    IOContract,
    StatePair,
    TensorSpec,
    with_range,
)
from edgekit.models.registry import contract_of, head_of

__all__ = [
    "BATCH",
    "ROLES",
    "TIME",
    "Axis",
    "Dim",
    "IOContract",
    "StatePair",
    "TensorSpec",
    "contract_for",
    "head_for",
    "with_range",
]


def contract_for(meta: dict[str, Any]) -> IOContract:
    """The contract of a zoo model, from its checkpoint metadata (its spec's contract builder)."""
    return contract_of(meta)


def head_for(meta: dict[str, Any]) -> str | None:
    """How a classifier's output becomes probabilities: one sigmoid output, or softmax over logits."""
    return head_of(meta)
