"""Where batch and time sit in a recurrent bundle's tensors, read once from the manifest.

Every consumer of a recurrent graph (the Generator and its steppers, bench, the parity rollout) asks a
Layout for shapes, for token feeds and for the last step's logits, so that a graph whose tensors are
not laid out as tokens (B, T), logits (B, T, V), state (L, B, H) is handled in this one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.errors import InputError
from edgekit.iospec import IOContract, TensorSpec

BATCH, TIME = "batch", "time"


def _axis(spec: TensorSpec, dim: str) -> int:
    if dim not in spec.shape:
        raise InputError(f"{spec.name} has no {dim!r} axis: its shape is {list(spec.shape)}")
    return spec.shape.index(dim)


def last_step(value: np.ndarray, batch_axis: int, time_axis: int) -> np.ndarray:
    """A view of `value` at the last time step, batch first: (B, ...) from e.g. (B, T, V)."""
    index: list[slice | int] = [slice(None)] * value.ndim
    index[time_axis] = -1
    view = value[tuple(index)]
    return np.moveaxis(view, batch_axis - (batch_axis > time_axis), 0)


@dataclass(frozen=True)
class StateSlot:
    input: str  # e.g. "state_in.h"
    output: str  # e.g. "state_out.h"
    spec: TensorSpec  # the input's spec, e.g. (L, "batch", H)
    batch_axis: int

    def shape(self, batch: int) -> tuple[int, ...]:
        return self.spec.concrete({BATCH: batch})


@dataclass(frozen=True)
class Layout:
    tokens: TensorSpec  # the int64 token input
    token_axes: tuple[int, int]  # (batch axis, time axis) of the tokens
    logits: TensorSpec  # the first output: next-token scores, the vocabulary last
    logits_axes: tuple[int, int]  # (batch axis, time axis) of the logits
    state: tuple[StateSlot, ...]

    @classmethod
    def of(cls, contract: IOContract) -> Layout:
        if not contract.state or contract.token_input is None:
            raise InputError("stepping needs a recurrent bundle (state inputs and a token input)")
        tokens = contract.spec(contract.token_input)
        logits = contract.outputs[0]
        slots = tuple(
            StateSlot(
                p.input, p.output, contract.spec(p.input), _axis(contract.spec(p.input), BATCH)
            )
            for p in contract.state
        )
        return cls(
            tokens,
            (_axis(tokens, BATCH), _axis(tokens, TIME)),
            logits,
            (_axis(logits, BATCH), _axis(logits, TIME)),
            slots,
        )

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(s.input, s.output) for s in self.state]

    def token_shape(self, batch: int, time: int) -> tuple[int, ...]:
        return self.tokens.concrete({BATCH: batch, TIME: time})

    def logits_shape(self, batch: int, time: int) -> tuple[int, ...]:
        return self.logits.concrete({BATCH: batch, TIME: time})

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
        return {s.input: np.zeros(s.shape(batch), np.dtype(s.spec.dtype)) for s in self.state}

    def state_after(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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
