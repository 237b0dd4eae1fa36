"""The one I/O description of an exported graph (torch-free): the contract, and the layout view of it.

A contract names every input and output with its dtype and shape. Symbolic dims are strings (any
name: "batch", "time", "sequence", ...), each described by an Axis: its role (which axis is batch and
which is time, inferred from the names "batch" and "time" or declared), the smallest size the graph
must accept and the size export traces at. Integer inputs carry their valid range. Recurrent state
inputs are paired with outputs. The contract draws feeds at any sizes, so parity and benchmarks
exercise every dynamic axis and the whole range of every integer input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.errors import InputError

if TYPE_CHECKING:
    from edgekit.bundle.layout import Layout
    from edgekit.bundle.manifest import Manifest

Dim = int | str
BATCH, TIME = "batch", "time"  # the two roles an axis can have
ROLES = (BATCH, TIME)


@dataclass(frozen=True)
class Axis:
    """A dynamic axis: the sizes parity runs it at, and its role."""

    name: str  # as it appears in shapes, e.g. "batch", "time", "sequence"
    role: str | None = None  # "batch" | "time" | None
    min: int = 1  # the smallest size the graph must accept
    example: int = 0  # the size export traces at (0: the default for the role, never below 2)
    # the largest size the graph accepts (None: any). A time axis at most 1 is a step-only graph:
    # one token per call, its prompts fed by stepping. An axis with min == max is static in ONNX.
    max: int | None = None

    def __post_init__(self) -> None:
        if self.role not in (None, *ROLES):
            raise InputError(
                f"axis {self.name!r}: role {self.role!r}; expected batch, time or none"
            )
        if not isinstance(self.min, int) or self.min < 1:
            raise InputError(f"axis {self.name!r}: min must be an integer >= 1, got {self.min!r}")
        if not isinstance(self.example, int) or (self.example and self.example < self.min):
            raise InputError(
                f"axis {self.name!r}: example size must be an integer >= min ({self.min}), "
                f"got {self.example!r}"
            )
        if self.max is not None and (
            not isinstance(self.max, int) or isinstance(self.max, bool) or self.max < self.min
        ):
            raise InputError(
                f"axis {self.name!r}: max must be an integer >= min ({self.min}), got {self.max!r}"
            )
        if self.max is not None and self.example > self.max:
            raise InputError(
                f"axis {self.name!r}: example size {self.example} is above its max {self.max}"
            )

    @classmethod
    def named(cls, name: str, **declared: Any) -> Axis:
        """An axis whose role, unless declared, comes from its name."""
        unknown = set(declared) - {"role", "min", "example", "max"}
        if unknown:
            raise InputError(
                f"axis {name!r}: unknown keys {sorted(unknown)}; use role, min, example, max"
            )
        role = declared.pop("role", name if name in ROLES else None)
        return cls(name, role, **declared)

    @property
    def traced(self) -> int:
        """The export size: >= 2, since torch.export specialises sizes 0 and 1."""
        default = 3 if self.role == TIME else 2
        return self.clamp(self.example or max(default, self.min))

    @property
    def large(self) -> int:
        """A size well above the export size, where a frozen dimension shows."""
        floor = {BATCH: 5, TIME: 37}.get(self.role or "", 0)
        return self.clamp(max(floor, 2 * self.traced + 1))

    @property
    def fixed(self) -> bool:
        """One size only (min == max): a static dimension in the exported graph."""
        return self.max == self.min

    def clamp(self, size: int) -> int:
        return size if self.max is None else min(size, self.max)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64"
    shape: tuple[Dim, ...]
    range: tuple[int, int] | None = None  # integer inputs: valid values low <= v < high

    def concrete(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        try:
            return tuple(sizes[d] if isinstance(d, str) else d for d in self.shape)
        except KeyError as exc:
            raise InputError(f"{self.name}: no size given for axis {exc.args[0]!r}") from None


@dataclass(frozen=True)
class StatePair:
    input: str  # e.g. "state_in.h"
    output: str  # e.g. "state_out.h"
    init: str = "zeros"
    # a state that grows by each call's T along this input axis (a KV cache: present =
    # concat(past, new)), from empty up to max_length; None: the state keeps its shape
    grows: str | None = None
    max_length: int | None = None
    when_full: str = "error"  # past max_length: "error" (refused before it starts) | "stop"


@dataclass
class IOContract:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    state: list[StatePair] = field(default_factory=list)
    token_input: str | None = None  # generate: the integer token input
    vocab_size: int = 0  # range of token ids
    axes: dict[str, Axis] = field(default_factory=dict)  # every symbolic dim; missing ones inferred
    # per-stream inputs that are not state: set once when a stream starts, read by every step
    # (e.g. a seq2seq decoder's encoder outputs)
    context: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for t in self.inputs + self.outputs:
            for d in t.shape:
                if isinstance(d, str) and d not in self.axes:
                    self.axes[d] = Axis.named(d)
        for role in ROLES:
            named = [a.name for a in self.axes.values() if a.role == role]
            if len(named) > 1:
                raise InputError(f"more than one axis has the role {role}: {named}; declare one")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def role_axis(self, role: str) -> str | None:
        """The name of the axis with `role` ("batch" or "time"), or None."""
        return next((a.name for a in self.axes.values() if a.role == role), None)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {
            t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str) and self._dynamic(d)}
            for t in self.inputs + self.outputs
            if any(self._dynamic(d) for d in t.shape)
        }

    def _dynamic(self, dim: Dim) -> bool:
        """A named axis the graph keeps dynamic (a fixed one, min == max, is static there)."""
        return isinstance(dim, str) and not self.axes[dim].fixed

    def spec(self, name: str) -> TensorSpec:
        for t in self.inputs + self.outputs:
            if t.name == name:
                return t
        raise InputError(
            f"no input or output named {name!r}; known: {self.input_names + self.output_names}"
        )

    def sizes(
        self, batch: int | None = None, time: int | None = None, at: str = "traced"
    ) -> dict[str, int]:
        """A size for every axis: each at its `at` size ("min", "traced" or "large"), then batch and
        time (whatever those axes are named) as given."""
        sizes = {name: getattr(axis, at) for name, axis in self.axes.items()}
        for role, size in ((BATCH, batch), (TIME, time)):
            name = self.role_axis(role)
            if size is not None and name is not None:
                sizes[name] = self.axes[name].clamp(size)  # a step-only graph: T = 1 always
        return sizes

    @property
    def step_only(self) -> bool:
        """A recurrent graph that takes one token per call (its time axis is at most 1)."""
        time = self.role_axis(TIME)
        return time is not None and self.axes[time].max == 1

    def stepping_only(self) -> IOContract:
        """This contract for the one-token step alone: its time axis fixed at 1 (static in the
        graph), so every prompt is fed by stepping."""
        time = self.role_axis(TIME)
        if time is None or not self.state:
            raise InputError("step-only needs a recurrent module: state_pairs and a time axis")
        axes = {**self.axes, time: replace(self.axes[time], min=1, example=0, max=1)}
        return replace(self, axes=axes)

    def most(self, role: str) -> int | None:
        """The largest size of the `role` axis the graph accepts (None: any)."""
        name = self.role_axis(role)
        return None if name is None else self.axes[name].max

    def state_shape(self, name: str, batch: int) -> tuple[int, ...]:
        """The initial shape of state input `name` for `batch` streams, other axes at their export
        size (a growing state starts empty along the axis it grows on)."""
        sizes = self.sizes(batch=batch, time=1)
        pair = next((p for p in self.state if p.input == name), None)
        if pair is not None and pair.grows is not None:
            sizes[pair.grows] = 0
        return self.spec(name).concrete(sizes)

    @property
    def growing(self) -> list[StatePair]:
        """The state pairs that grow from call to call (KV caches)."""
        return [p for p in self.state if p.grows is not None]

    @property
    def max_positions(self) -> int | None:
        """The most positions a growing state (a KV cache) holds; None: no state grows."""
        return min((p.max_length or 0 for p in self.growing), default=None)

    @property
    def when_full(self) -> str:
        """What generation does at max_positions: "stop" where export declared it, else "error"."""
        stops = {p.when_full for p in self.growing}
        return "stop" if stops == {"stop"} else "error"

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        """The initial state of `batch` streams: zeros, keyed by state input."""
        return {
            p.input: np.zeros(self.state_shape(p.input, batch), self.spec(p.input).dtype)
            for p in self.state
        }

    def layout(self) -> Layout:
        """Where batch and time sit in this recurrent graph's tensors (an error for others)."""
        from edgekit.bundle.layout import Layout

        return Layout.of(self)

    def int_range(self, spec: TensorSpec) -> tuple[int, int]:
        if spec.range is not None:
            return spec.range
        return (0, max(self.vocab_size, 1)) if spec.name == self.token_input else (0, 2)

    def feeds(self, sizes: Mapping[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Random feeds: integers uniform over their valid range, floats standard normal."""
        feeds = {}
        for t in self.inputs:
            shape = t.concrete(sizes)
            if np.issubdtype(np.dtype(t.dtype), np.integer) or t.dtype == "bool":
                low, high = self.int_range(t)
                feeds[t.name] = rng.integers(low, high, size=shape).astype(t.dtype)
            else:
                feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
        return feeds

    def example(self, batch: int, time: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Random feeds at (batch, time), every other axis at its export size."""
        return self.feeds(self.sizes(batch=batch, time=time), rng)

    def to_manifest(self) -> dict[str, Any]:
        return {
            "inputs": [_spec_dict(t) for t in self.inputs],
            "outputs": [_spec_dict(t) for t in self.outputs],
            "axes": [
                {
                    "name": a.name,
                    "role": a.role,
                    "min": a.min,
                    "example": a.traced,
                    **({"max": a.max} if a.max is not None else {}),
                }
                for a in self.axes.values()
            ],
            "state": [
                {
                    "input": p.input,
                    "output": p.output,
                    "init": p.init,
                    "shape": list(self.spec(p.input).shape),
                    "batch_axis": _role_index(self, self.spec(p.input), BATCH),
                    **({"grows": p.grows, "max_length": p.max_length} if p.grows else {}),
                    **({"when_full": p.when_full} if p.grows and p.when_full != "error" else {}),
                }
                for p in self.state
            ],
            **({"context": list(self.context)} if self.context else {}),
        }

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any] | Manifest) -> IOContract:
        """The contract a manifest document describes (a typed Manifest: its own contract)."""
        if not isinstance(manifest, Mapping):
            return manifest.contract

        def spec(d: Mapping[str, Any]) -> TensorSpec:
            rng = tuple(d["range"]) if d.get("range") is not None else None
            return TensorSpec(d["name"], d["dtype"], tuple(d["shape"]), rng)

        optional = ("init", "grows", "max_length", "when_full")  # absent: the defaults
        state = [
            StatePair(s["input"], s["output"], **{k: s[k] for k in optional if k in s})
            for s in manifest["state"]
        ]
        axes = {
            a["name"]: Axis(
                a["name"], a.get("role"), a.get("min", 1), a.get("example", 0), a.get("max")
            )
            for a in manifest.get("axes") or []
        }
        vocab = manifest.get("vocab") or []
        inputs = [spec(t) for t in manifest["inputs"]]
        tokens = manifest.get("token_input") or next(
            (t.name for t in inputs if np.issubdtype(np.dtype(t.dtype), np.integer)), None
        )
        return cls(
            inputs,
            [spec(t) for t in manifest["outputs"]],
            state,
            tokens if state else None,
            len(vocab),
            axes,
            list(manifest.get("context") or []),
        )


def _role_index(contract: IOContract, spec: TensorSpec, role: str) -> int | None:
    name = contract.role_axis(role)
    return spec.shape.index(name) if name in spec.shape else None


def _spec_dict(t: TensorSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}
    if t.range is not None:
        d["range"] = list(t.range)
    return d


def with_range(spec: TensorSpec, low: int, high: int) -> TensorSpec:
    if not (isinstance(low, int) and isinstance(high, int)) or high <= low:
        raise InputError(
            f"{spec.name}: integer range must be two integers low < high, got {low}, {high}"
        )
    return replace(spec, range=(low, high))
