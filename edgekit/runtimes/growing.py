"""Stepping a growing state (a KV cache) on ONNX Runtime in buffers sized once.

A growing state's output is its input grown by the call's length (`present = concat(past, new)`),
so its shape changes on every call and ping-pong buffers of one shape cannot hold it. Here each
state has two flat buffers, each large enough for the state at its max_length. A call views the
live buffer's first elements as the input (B, heads, P, d) and the spare buffer's first elements as
the output (B, heads, P + T, d): both views are contiguous, ONNX Runtime writes the output into the
bound memory, and the roles swap. Per call only the small OrtValue wrappers and their bindings are
made; no state-sized array is allocated after construction (tests/test_growing_state.py measures
it). A state that keeps its shape beside a growing one lives in the same kind of buffers.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.bundle.io import TIME
from edgekit.errors import InputError
from edgekit.runtimes.stepper import StepBuffers, checked_state, prefill_chunks


class GrowingStepper(StepBuffers):
    """IO-bound stepping of a bundle with a growing state, in buffers sized once (CPU)."""

    def __init__(self, backend: Any, batch: int) -> None:
        super().__init__(backend.layout, batch)
        self.ort = require("onnxruntime", "running bundles")
        self.session = backend.session
        # per state input: its shape with every axis but the growing one fixed, and its largest
        self.largest = {
            name: self._shape(name, self.growing[name][1]) if name in self.growing else shape
            for name, shape in self.state_shapes.items()
        }
        self.flat = [
            {name: np.zeros(prod(shape), np.float32) for name, shape in self.largest.items()}
            for _ in range(2)
        ]
        self.token_value = self.ort.OrtValue.ortvalue_from_numpy(self.tokens)
        self.logits_value = self.ort.OrtValue.ortvalue_from_numpy(self.logits)
        self._context_values: dict[str, Any] = {}
        self.current = 0  # self.flat[current] holds the live state
        self.held = 0  # positions the growing states hold
        self.reset()

    def _shape(self, name: str, length: int) -> tuple[int, ...]:
        """State `name` holding `length` positions (a state that keeps its shape: as it is)."""
        shape = list(self.state_shapes[name])
        if name in self.growing:
            shape[self.growing[name][0]] = length
        return tuple(shape)

    def _view(self, k: int, name: str, length: int) -> np.ndarray:
        shape = self._shape(name, length)
        return self.flat[k][name][: prod(shape)].reshape(shape)  # contiguous: the buffer's start

    def set_context(self, values: Mapping[str, np.ndarray]) -> None:
        super().set_context(values)
        self._context_values = {
            name: self.ort.OrtValue.ortvalue_from_numpy(value)
            for name, value in self.context.items()
        }

    def _call(self, steps: int, tokens: Any, logits: Any) -> Any:
        """One session call feeding `steps` positions; returns the binding (outputs readable)."""
        self._check_context()
        if self.held + steps > min(most for _, most in self.growing.values()):
            name, (_, most) = min(self.growing.items(), key=lambda item: item[1][1])
            raise InputError(
                f"{name} holds {self.held} positions and this call adds {steps}: more than the "
                f"{most} it was exported for (max_length); start a new stream, or export with a "
                "larger max_length"
            )
        value = self.ort.OrtValue.ortvalue_from_numpy
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.layout.tokens.name, tokens)
        if logits is None:
            binding.bind_output(self.layout.logits.name, "cpu")
        else:
            binding.bind_ortvalue_output(self.layout.logits.name, logits)
        for name, context in self._context_values.items():
            binding.bind_ortvalue_input(name, context)
        live, spare = self.current, 1 - self.current
        for name_in, name_out in self.layout.pairs:
            binding.bind_ortvalue_input(name_in, value(self._view(live, name_in, self.held)))
            grown = self.held + steps
            binding.bind_ortvalue_output(name_out, value(self._view(spare, name_in, grown)))
        self.session.run_with_iobinding(binding)
        self.current, self.held = spare, self.held + steps
        return binding

    def step(self) -> np.ndarray:
        """Advance every stream by `next_tokens`; return logits (B, V) (a view)."""
        self._call(1, self.token_value, self.logits_value)
        return self.next_logits

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Feed (B, T) token ids (in pieces the graph takes); return the last logits (B, V)."""
        most = self.layout.contract.most(TIME)
        for piece in prefill_chunks(ids, self.batch, most):
            feed = self.ort.OrtValue.ortvalue_from_numpy(self.layout.token_feed(piece))
            binding = self._call(piece.shape[1], feed, None)
            logits = binding.get_outputs()[0].numpy()
            self.next_logits[...] = self.layout.last_logits(logits)
        return self.next_logits

    def get_state(self) -> dict[str, np.ndarray]:
        return {
            name: self._view(self.current, name, self.held).copy() for name in self.state_shapes
        }

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        checked = checked_state(state, self.state_shapes, self.growing)
        lengths = {a.shape[self.growing[n][0]] for n, a in checked.items() if n in self.growing}
        if len(lengths) > 1:
            raise InputError(f"growing states hold different lengths {sorted(lengths)}; one only")
        held = lengths.pop() if lengths else 0
        for name, arr in checked.items():
            self._view(self.current, name, held)[...] = arr
        self.held = held

    def reset(self) -> None:
        self.set_state(self.layout.zero_state(self.batch))
