"""Stepping a growing state (a KV cache) on ONNX Runtime in buffers sized once.

A growing state's output is its input grown by the call's length (`present = concat(past, new)`),
so its shape changes on every call and ping-pong buffers of one shape cannot hold it. Here each
state has two flat buffers, each large enough for the state at its max_length. A call views the
live buffer's first elements as the input (B, heads, P, d) and the spare buffer's first elements as
the output (B, heads, P + T, d): both are contiguous, so a call binds each by the buffer's address and
its shape, ONNX Runtime writes the output into that memory, and the roles swap. No state-sized array
is allocated after construction (tests/test_growing_state.py traces it). A state that keeps its
shape beside a growing one lives in the same kind of buffers.
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
        # each buffer's address: a call binds the state by pointer and shape (a view's start is
        # the buffer's), which costs less than wrapping a view in an OrtValue on every call
        self.address = [{n: a.ctypes.data for n, a in flat.items()} for flat in self.flat]
        try:  # the native CPU device, made once (see _binders)
            self.cpu: Any = self.ort.OrtDevice.make("cpu", 0)._get_c_device()
        except AttributeError:  # another onnxruntime: the public binding calls
            self.cpu = None
        self.room = min(most for _, most in self.growing.values())
        self._bind_steps()
        self.current = 0  # self.flat[current] holds the live state
        self.held = 0  # positions the growing states hold
        self.reset()

    def _bind_steps(self) -> None:
        self._step_binding = self._binding()
        self._step_binders = self._binders(self._step_binding)

    def _binding(self) -> Any:
        """The binding of one-token steps: tokens, logits and context bound here once, the state
        at each call (from whichever buffer is live)."""
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.layout.tokens.name, self.token_value)
        binding.bind_ortvalue_output(self.layout.logits.name, self.logits_value)
        for name, context in self._context_values.items():
            binding.bind_ortvalue_input(name, context)
        return binding

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
        self._bind_steps()

    def _call(self, steps: int, binding: Any, binders: tuple[Any, Any] | None = None) -> Any:
        """One session call through `binding` (tokens, logits and context bound) feeding `steps`
        positions; returns the binding (outputs readable)."""
        self._check_context()
        if self.held + steps > self.room:  # every growing state holds `held` positions
            for name in self.growing:
                self.refuse_overflow(name, self.held, steps)
        live, spare, grown = self.current, 1 - self.current, self.held + steps
        bind_input, bind_output = self._binders(binding) if binders is None else binders
        for name_in, name_out in self.layout.pairs:
            past, present = self._shape(name_in, self.held), self._shape(name_in, grown)
            bind_input(name_in, past, self.address[live][name_in])
            bind_output(name_out, present, self.address[spare][name_in])
        self.session.run_with_iobinding(binding)
        self.current, self.held = spare, grown
        return binding

    def _binders(self, binding: Any) -> tuple[Any, Any]:
        """(bind_input, bind_output) taking (name, shape, address) for CPU float32 memory. The
        binding's native object with the device made once where onnxruntime has them (1.32 does):
        IOBinding.bind_input makes a device per call, which costs more than the binding does."""
        native = getattr(binding, "_iobinding", None)
        if self.cpu is not None and native is not None:
            cpu = self.cpu
            return (
                lambda name, shape, at: native.bind_input(name, cpu, np.float32, shape, at),
                lambda name, shape, at: native.bind_output(name, cpu, np.float32, shape, at),
            )
        return (
            lambda name, shape, at: binding.bind_input(name, "cpu", 0, np.float32, shape, at),
            lambda name, shape, at: binding.bind_output(name, "cpu", 0, np.float32, shape, at),
        )

    def step(self) -> np.ndarray:
        """Advance every stream by `next_tokens`; return logits (B, V) (a view)."""
        self._call(1, self._step_binding, self._step_binders)
        return self.next_logits

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Feed (B, T) token ids (in pieces the graph takes); return the last logits (B, V)."""
        most = self.layout.contract.most(TIME)
        for piece in prefill_chunks(ids, self.batch, most):
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.layout.tokens.name, self.layout.token_feed(piece))
            binding.bind_output(self.layout.logits.name, "cpu")
            for name, context in self._context_values.items():
                binding.bind_ortvalue_input(name, context)
            logits = self._call(piece.shape[1], binding).get_outputs()[0].numpy()
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
