"""The zoo's I/O contracts by model name (kept for older imports; the I/O types live in edgekit.bundle.io)."""

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
from edgekit.errors import InputError

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
    """The contract of a zoo model, from its checkpoint metadata."""
    model, cfg = meta["model"], meta["config"]
    if model in ("linear", "logistic"):
        name = "prediction" if model == "linear" else "probability"
        return IOContract(
            [TensorSpec("features", "float32", ("batch", cfg["in_features"]))],
            [TensorSpec(name, "float32", ("batch", 1))],
        )
    if model in ("cnn", "lenet", "rowlstm"):
        size = cfg.get("image_size", 28)
        channels = 3 if model == "cnn" else 1
        classes = cfg["num_classes"]
        out = (
            TensorSpec("probability", "float32", ("batch", 1))
            if (model == "cnn" and classes == 2)
            else TensorSpec("logits", "float32", ("batch", classes))
        )
        return IOContract([TensorSpec("image", "float32", ("batch", channels, size, size))], [out])
    if model == "charlm":
        names = ("h", "c") if cfg["cell"] in ("lstm", "scratch-lstm") else ("h",)
        state_shape: tuple[Dim, ...] = (cfg["layers"], "batch", cfg["hidden"])
        v = cfg["vocab_size"]
        return IOContract(
            [TensorSpec("tokens", "int64", ("batch", "time"), (0, v))]
            + [TensorSpec(f"state_in.{n}", "float32", state_shape) for n in names],
            [TensorSpec("logits", "float32", ("batch", "time", v))]
            + [TensorSpec(f"state_out.{n}", "float32", state_shape) for n in names],
            [StatePair(f"state_in.{n}", f"state_out.{n}") for n in names],
            token_input="tokens",
            vocab_size=v,
        )
    raise InputError(f"no I/O contract for model {model!r}")


def head_for(meta: dict[str, Any]) -> str | None:
    """How a classifier's output becomes probabilities: one sigmoid output, or softmax over logits."""
    if meta["task"] != "classify":
        return None
    out = contract_for(meta).outputs[0].name
    return "probability" if out == "probability" else "logits"
