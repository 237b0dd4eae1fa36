"""The layout view of a recurrent IOContract: where batch and time sit in its tensors (torch-free).

Every consumer of a recurrent graph (steppers, bench, the rollout) asks the Layout for shapes, token
feeds and the last step's logits, so a graph not laid out as tokens (B, T), logits (B, T, V),
state (L, B, H) is handled here and nowhere else. It holds no facts of its own: each is read from
the contract (`contract.layout()`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgekit.bundle.io import BATCH, TIME, IOContract, StatePair, TensorSpec
from edgekit.errors import InputError


def _axis(spec: TensorSpec, dim: str, role: str) -> int:
    if dim not in spec.shape:
        raise InputError(
            f"{spec.name} has no {role} axis ({dim!r}): its shape is {list(spec.shape)}; a "
            f"recurrent bundle needs the {role} axis on its tokens, logits and state"
        )
    return spec.shape.index(dim)


def last_step(value: np.ndarray, batch_axis: int, time_axis: int) -> np.ndarray:
    """A view of `value` at the last time step, batch first: (B, ...) from e.g. (B, T, V)."""
    index: list[slice | int] = [slice(None)] * value.ndim
    index[time_axis] = -1
    view = value[tuple(index)]
    return np.moveaxis(view, batch_axis - (batch_axis > time_axis), 0)


@dataclass(frozen=True)
class StateSlot:
    """A state pair as the layout sees it: the pair, the input's spec and its batch axis."""

    pair: StatePair
    spec: TensorSpec  # the input's spec, e.g. (L, "batch", H)
    batch_axis: int
    contract: IOContract = field(repr=False, compare=False)

    @property
    def input(self) -> str:
        return self.pair.input

    @property
    def output(self) -> str:
        return self.pair.output

    def shape(self, batch: int) -> tuple[int, ...]:
        return self.contract.state_shape(self.pair.input, batch)


@dataclass(frozen=True)
class Layout:
    """A view of a recurrent IOContract: its token input, its logits and its state slots."""

    contract: IOContract = field(repr=False, compare=False)
    tokens: TensorSpec  # the int64 token input
    token_axes: tuple[int, int]  # (batch axis, time axis) of the tokens
    logits: TensorSpec  # the first output that is not state: next-token scores, vocabulary last
    logits_axes: tuple[int, int]  # (batch axis, time axis) of the logits
    state: tuple[StateSlot, ...]
    dims: tuple[str, str]  # the names of the batch and time axes, e.g. ("batch", "time")
    # per-stream inputs read by every step, and the batch axis of each, e.g. (B, S, H): 0
    context: tuple[tuple[TensorSpec, int], ...] = ()

    @classmethod
    def of(cls, contract: IOContract) -> Layout:
        if not contract.state or contract.token_input is None:
            raise InputError("stepping needs a recurrent bundle (state inputs and a token input)")
        batch, time = contract.role_axis(BATCH), contract.role_axis(TIME)
        if batch is None or time is None:
            raise InputError(
                "a recurrent bundle needs one axis with the role batch and one with the role time; "
                f"its axes are {sorted(contract.axes)}"
            )
        tokens = contract.spec(contract.token_input)
        state_outputs = {p.output for p in contract.state}
        logits = next(t for t in contract.outputs if t.name not in state_outputs)
        slots = tuple(
            StateSlot(p, spec, _axis(spec, batch, BATCH), contract)
            for p in contract.state
            for spec in [contract.spec(p.input)]
        )
        context = tuple(
            (spec, _axis(spec, batch, BATCH))
            for name in contract.context
            for spec in [contract.spec(name)]
        )
        return cls(
            contract,
            tokens,
            (_axis(tokens, batch, BATCH), _axis(tokens, time, TIME)),
            logits,
            (_axis(logits, batch, BATCH), _axis(logits, time, TIME)),
            slots,
            (batch, time),
            context,
        )

    @property
    def sizes(self) -> tuple[tuple[str, int], ...]:
        """Every symbolic dim at its export size."""
        return tuple(self.contract.sizes().items())

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(s.input, s.output) for s in self.state]

    def token_shape(self, batch: int, time: int) -> tuple[int, ...]:
        return self.tokens.concrete(self.contract.sizes(batch, time))

    def logits_shape(self, batch: int, time: int) -> tuple[int, ...]:
        return self.logits.concrete(self.contract.sizes(batch, time))

    def token_feed(self, ids: np.ndarray) -> np.ndarray:
        """(B, T) token ids -> the graph's token layout (contiguous int64)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 2:
            raise InputError(f"token ids must be (batch, time), got shape {ids.shape}")
        b, t = self.token_axes
        return np.ascontiguousarray(np.moveaxis(ids, (0, 1), (b, t)))

    def step_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """A (B,) view of a one-step token buffer: write the next tokens here."""
        return last_step(tokens, *self.token_axes)

    def last_logits(self, logits: np.ndarray) -> np.ndarray:
        """(B, V) view of the last time step of a logits output."""
        return last_step(logits, *self.logits_axes)

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        return self.contract.zero_state(batch)

    def state_after(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The state outputs of a call, keyed by the state input they feed next."""
        return {s.input: outputs[s.output] for s in self.state}

    def take_rows(self, state: dict[str, np.ndarray], rows: list[int]) -> dict[str, np.ndarray]:
        """The state of streams `rows` (contiguous copies), from a state of many streams."""
        return {
            s.input: np.ascontiguousarray(np.take(state[s.input], rows, axis=s.batch_axis))
            for s in self.state
        }

    def put_rows(
        self, state: dict[str, np.ndarray], rows: list[int], part: dict[str, np.ndarray]
    ) -> None:
        """Write the state of streams `rows` back into a state of many streams, in place."""
        for s in self.state:
            index: list[slice | list[int]] = [slice(None)] * state[s.input].ndim
            index[s.batch_axis] = rows
            state[s.input][tuple(index)] = part[s.input]

    def context_feeds(
        self, values: Mapping[str, np.ndarray] | None, batch: int
    ) -> dict[str, np.ndarray]:
        """The context of `batch` streams as the graph takes it (contiguous, its dtype), or one
        InputError naming what is missing, extra or misshapen."""
        values = dict(values or {})
        names = [spec.name for spec, _ in self.context]
        if set(values) != set(names):
            wanted = (
                f"this bundle reads the context {names} at every step: give it when the stream "
                "starts (session(context=...), generate(..., context=...), edgekit generate --context "
                "FILE.npz)"
                if names
                else "this bundle takes no context"
            )
            raise InputError(f"{wanted}; got {sorted(values)}")
        feeds = {}
        for spec, axis in self.context:
            value = np.asarray(values[spec.name], dtype=spec.dtype)
            if batch == 1 and value.ndim == len(spec.shape) - 1:  # one stream's, without the axis
                value = np.expand_dims(value, axis)
            value = np.ascontiguousarray(value)
            fits = value.ndim == len(spec.shape) and all(
                isinstance(d, str) or value.shape[i] == d for i, d in enumerate(spec.shape)
            )
            if not fits or value.shape[axis] != batch:
                raise InputError(
                    f"context {spec.name}: shape {list(value.shape)}, expected {list(spec.shape)} "
                    f"with {batch} along {self.dims[0]!r}"
                )
            feeds[spec.name] = value
        return feeds

    def stacked_context(
        self,
        given: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]] | None,
        batch: int,
    ) -> dict[str, np.ndarray]:
        """The context of `batch` streams from either form a caller has: one mapping, each value
        already stacked along its batch axis, or one mapping per stream (each value with a batch
        axis of 1, or without it), stacked here."""
        if given is None or isinstance(given, Mapping):
            return self.context_feeds(given, batch)
        streams = list(given)
        if len(streams) != batch:
            raise InputError(f"context: {len(streams)} streams' contexts for {batch} streams")
        parts = [self.context_feeds(one, 1) for one in streams]  # each checked on its own
        return {
            spec.name: np.concatenate([part[spec.name] for part in parts], axis=axis)
            for spec, axis in self.context
        }

    def take_context(
        self, context: dict[str, np.ndarray], rows: list[int]
    ) -> dict[str, np.ndarray]:
        """The context of streams `rows` (contiguous copies)."""
        return {
            spec.name: np.ascontiguousarray(np.take(context[spec.name], rows, axis=axis))
            for spec, axis in self.context
            if spec.name in context
        }
