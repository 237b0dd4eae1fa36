"""The I/O contract of an exported graph, in one place per model (torch-free).

A contract names every input and output with its dtype and shape (symbolic dims are strings such as
"batch" and "time"), pairs recurrent state inputs with outputs, and draws example feeds at any shape
so that parity and benchmarks exercise the dynamic axes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgekit.errors import InputError

Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64"
    shape: tuple[Dim, ...]

    def concrete(self, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.shape)


@dataclass(frozen=True)
class StatePair:
    input: str  # e.g. "state_in.h"
    output: str  # e.g. "state_out.h"
    init: str = "zeros"


@dataclass
class IOContract:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    state: list[StatePair] = field(default_factory=list)
    token_input: str | None = None  # generate: the int64 token input
    vocab_size: int = 0  # range of token ids

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {
            t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
            for t in self.inputs + self.outputs
            if any(isinstance(d, str) for d in t.shape)
        }

    def spec(self, name: str) -> TensorSpec:
        for t in self.inputs + self.outputs:
            if t.name == name:
                return t
        raise KeyError(name)

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        sizes = {"batch": batch, "time": 1}
        return {
            p.input: np.zeros(self.spec(p.input).concrete(sizes), dtype=self.spec(p.input).dtype)
            for p in self.state
        }

    def example(self, batch: int, time: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Random feeds at (batch, time): tokens uniform over the vocab, floats standard normal."""
        sizes = {"batch": batch, "time": time}
        feeds = {}
        for t in self.inputs:
            shape = t.concrete(sizes)
            if t.dtype == "int64":
                feeds[t.name] = rng.integers(0, max(self.vocab_size, 1), size=shape, dtype=np.int64)
            else:
                feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
        return feeds

    def to_manifest(self) -> dict[str, Any]:
        return {
            "inputs": [_spec_dict(t) for t in self.inputs],
            "outputs": [_spec_dict(t) for t in self.outputs],
            "state": [
                {
                    **asdict(p),
                    "shape": list(self.spec(p.input).shape),
                    "batch_axis": list(self.spec(p.input).shape).index("batch"),
                }
                for p in self.state
            ],
        }

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> IOContract:
        def spec(d: dict[str, Any]) -> TensorSpec:
            return TensorSpec(d["name"], d["dtype"], tuple(d["shape"]))

        state = [
            StatePair(s["input"], s["output"], s.get("init", "zeros")) for s in manifest["state"]
        ]
        vocab = manifest.get("vocab") or []
        tokens = next((t["name"] for t in manifest["inputs"] if t["dtype"] == "int64"), None)
        return cls(
            [spec(t) for t in manifest["inputs"]],
            [spec(t) for t in manifest["outputs"]],
            state,
            tokens if state else None,
            len(vocab),
        )


def _spec_dict(t: TensorSpec) -> dict[str, Any]:
    return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}


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
            [TensorSpec("tokens", "int64", ("batch", "time"))]
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
