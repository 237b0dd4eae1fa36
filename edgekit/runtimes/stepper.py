"""Recurrent stepping: one interface, two ways to carry the state between calls.

A stepper advances `batch` independent streams. Write the next token of every stream into
`next_tokens` (B,), call `step()`, read `next_logits` (B, V); `prefill(ids)` feeds a (B, T) prompt in
one call; `get_state`/`set_state`/`reset` save and restore the streams. Shapes come from the bundle's
Layout, so a graph with another axis order is handled there, not here.

- `BoundStepper` (ONNX Runtime): IO binding and ping-pong state buffers, no per-step allocation.
- `HostStepper` (any backend): state through the host as numpy arrays, a plain `run` per step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.bundle.io import TIME
from edgekit.bundle.layout import Layout
from edgekit.errors import InputError
from edgekit.rollout import Rollout, Stepper


def _ort() -> Any:
    return require("onnxruntime", "running bundles")


def checked_state(
    state: Mapping[str, np.ndarray],
    shapes: Mapping[str, tuple[int, ...]],
    growing: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, np.ndarray]:
    """`state` as contiguous float32 arrays, or an error naming what is missing or misshapen. A
    `growing` state (name -> (axis, max length)) may have any length up to its maximum there."""
    out = {}
    for name, shape in shapes.items():
        if name not in state:
            raise InputError(f"state is missing {name!r}; expected {sorted(shapes)}")
        arr = np.ascontiguousarray(state[name], dtype=np.float32)
        want = list(shape)
        if growing and name in growing and arr.ndim == len(want):
            axis, most = growing[name]
            if arr.shape[axis] <= most:
                want[axis] = arr.shape[axis]
        if tuple(arr.shape) != tuple(want):
            raise InputError(f"state {name}: shape {arr.shape}, expected {tuple(shape)}")
        out[name] = arr
    return out


def refuse_unless_ort(contract: Any) -> None:
    """Context inputs and a growing state are held by ONNX Runtime's steppers alone: another
    backend's stepper refuses such a bundle with this one line."""
    if steps_on_ort_only(contract):
        raise InputError(
            "bundles with context inputs or growing state step on ONNX Runtime (cpu or cuda)"
        )


def steps_on_ort_only(contract: Any) -> bool:
    return bool(contract.context or contract.growing)


PREFILL_CHUNK = 1024  # time steps per prefill call: memory stays bounded for any prompt length


def check_prefill(ids: np.ndarray, batch: int) -> None:
    if ids.ndim != 2 or ids.shape[0] != batch or ids.shape[1] < 1:
        raise InputError(f"prefill tokens must be ({batch}, T >= 1), got {ids.shape}")


def prefill_chunks(ids: np.ndarray, batch: int, most: int | None = None) -> list[np.ndarray]:
    """(B, T) prompt ids as (B, <= PREFILL_CHUNK) pieces, run one after another with the state
    carried: a recurrent graph's activations grow with T, so a long prompt in one call would need
    memory in proportion (about 1.7 kB per character on a 2x256 LSTM), and its result is the same.
    A graph whose time axis takes at most `most` steps per call gets pieces of that many (a
    step-only graph: one token at a time, its prompt fed by stepping)."""
    check_prefill(ids, batch)
    size = min(PREFILL_CHUNK, most or PREFILL_CHUNK)
    return [ids[:, t : t + size] for t in range(0, ids.shape[1], size)]


def greedy(stepper: Stepper) -> Callable[[], np.ndarray]:
    """One greedy step of every stream (the one rollout's advance): the argmax of the last logits
    is fed back."""
    return Rollout(stepper).advance


def steady_greedy(stepper: Any, seed: int = 0) -> Callable[[], np.ndarray]:
    """`greedy`, ready to be called any number of times (what bench and the quantize and step-graph
    timings call): a bundle's context inputs set once, at random; a growing cache (KV) prefilled
    to half its max_length and put back there whenever it is full, so every call steps a cache of
    working length and none runs past the maximum."""
    contract = stepper.layout.contract
    rng = np.random.default_rng(seed)
    if contract.context:
        drawn = contract.example(stepper.batch, 1, rng)
        stepper.set_context({name: drawn[name] for name in contract.context})
    step = greedy(stepper)
    if not contract.growing:
        return step
    room = contract.max_positions or 0
    held = [room // 2]
    tokens = contract.layout().tokens
    low, high = contract.int_range(tokens)
    stepper.prefill(rng.integers(low, high, size=(int(stepper.batch), held[0])))
    saved = stepper.get_state()

    def run() -> np.ndarray:
        if held[0] >= room:
            stepper.set_state(saved)
            held[0] = room // 2
        held[0] += 1
        return step()

    return run


class StepBuffers:
    """The token and logits buffers of one step, with (B,) and (B, V) views in any layout."""

    def __init__(self, layout: Layout, batch: int) -> None:
        self.layout, self.batch = layout, batch
        self.tokens = np.zeros(layout.token_shape(batch, 1), np.int64)
        self.logits = np.zeros(layout.logits_shape(batch, 1), np.float32)
        self.next_tokens = layout.step_tokens(self.tokens)  # (B,) view: write tokens here
        self.next_logits = layout.last_logits(self.logits)  # (B, V) view
        self.state_shapes = {s.input: s.shape(batch) for s in layout.state}
        self.context: dict[str, np.ndarray] = {}  # per-stream inputs every call reads
        # growing state (KV caches): input -> (the axis it grows on, the most it may hold)
        self.growing = {
            s.input: (s.spec.shape.index(s.pair.grows), s.pair.max_length or 0)
            for s in layout.state
            if s.pair.grows is not None
        }

    def set_context(self, values: Mapping[str, np.ndarray]) -> None:
        """The context of every stream (e.g. encoder outputs, (B, S, H)), read by each call."""
        self.context = self.layout.context_feeds(values, self.batch)

    def refuse_overflow(self, name: str, held: int, steps: int) -> None:
        """Refuse a call that would grow growing state `name`, holding `held` positions, by
        `steps` past its max_length: one line naming it."""
        most = self.growing[name][1]
        if held + steps > most:
            raise InputError(
                f"{name} holds {held} positions and this call adds {steps}: more than the "
                f"{most} it was exported for (max_length); start a new stream, or export "
                "with a larger max_length"
            )

    def _check_context(self) -> None:
        if self.layout.context and not self.context:
            self.layout.context_feeds({}, self.batch)  # raises, naming what to give


class HostStepper(StepBuffers):
    """State through the host: a feeds dict in and numpy state out on every call."""

    def __init__(self, backend: Any, batch: int) -> None:
        super().__init__(backend.layout, batch)
        self.backend = backend
        self.state: dict[str, np.ndarray] = {}
        self.reset()

    def _call(self, tokens: np.ndarray) -> np.ndarray:
        self._check_context()
        if self.growing:
            self.check_room(tokens.shape[self.layout.token_axes[1]])
        feeds = {self.layout.tokens.name: tokens, **self.state, **self.context}
        out = self.backend.run(feeds, check=False)
        self.state = self.layout.state_after(out)
        self.next_logits[...] = self.layout.last_logits(out[self.layout.logits.name])
        return self.next_logits

    def check_room(self, steps: int) -> None:
        """Refuse a call that would grow a state past its max_length."""
        for name, (axis, _) in self.growing.items():
            self.refuse_overflow(name, self.state[name].shape[axis], steps)

    def step(self) -> np.ndarray:
        return self._call(self.tokens)

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        for piece in prefill_chunks(ids, self.batch, self.layout.contract.most(TIME)):
            self._call(self.layout.token_feed(piece))
        return self.next_logits

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.state.items()}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        checked = checked_state(state, self.state_shapes, self.growing)
        self.state = {n: a.copy() for n, a in checked.items()}

    def reset(self) -> None:
        self.state = self.layout.zero_state(self.batch)


class BoundStepper(StepBuffers):
    """Allocation-free recurrent stepping with IO binding and ping-pong state buffers (ONNX Runtime).

    Two state buffer sets A and B exist for a fixed batch size. Call k binds one set as `state_in.*`
    and the other as `state_out.*`, then the roles swap, so step k's outputs are step k+1's inputs
    with no copy, no per-step allocation and no dict building. On CPU the buffers are numpy arrays
    wrapped (not copied) by OrtValues; on CUDA they are device OrtValues, so state never leaves the
    GPU and only the token (in) and the logits row (out) cross to the host.
    """

    def __init__(self, backend: Any, batch: int) -> None:
        super().__init__(backend.layout, batch)
        ort = _ort()
        self.session = backend.session  # prefill: the sequence graph
        # steps: the one-token graph when the backend has one (same state layout and names)
        pick = getattr(backend, "step_session_for", None)  # by batch: see OrtBackend
        self.step_session = (pick(batch) if pick else None) or backend.session
        self.uncaptured = backend.uncaptured
        self.graph = backend.cuda_graph
        on_gpu = backend.device != "cpu"
        if (
            self.graph
        ):  # a CUDA graph replays fixed device addresses: token and logits live there too
            value = ort.OrtValue.ortvalue_from_shape_and_type
            self._token_value = value(self.tokens.shape, np.int64, "cuda", 0)
            self._logits_value = value(self.logits.shape, np.float32, "cuda", 0)
        else:
            self._token_value = ort.OrtValue.ortvalue_from_numpy(self.tokens)
            self._logits_value = ort.OrtValue.ortvalue_from_numpy(self.logits)
        # One captured graph per ping-pong parity (each records its own buffer addresses). Without
        # graphs no RunOptions are passed at all: on CPU, passing one costs ~25 us per call
        # (measured with onnxruntime 1.32 on a 2x256 LSTM step of ~50 us).
        self.run_options: list[Any] = [None, None]
        if self.graph:
            self.run_options = [backend.graph_run_options(), backend.graph_run_options()]
        self.buffers: list[dict[str, Any]] = []
        for _ in range(2):
            buf = {}
            for name, shape in self.state_shapes.items():
                if on_gpu:
                    buf[name] = ort.OrtValue.ortvalue_from_shape_and_type(
                        shape, np.float32, "cuda", 0
                    )
                else:
                    buf[name] = ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32))
            self.buffers.append(buf)
        self.on_gpu = on_gpu
        self._context_values: dict[str, Any] = {}
        self.bindings = [self._binding(k) for k in range(2)]
        self.current = 0  # self.buffers[current] holds the live state
        self.reset()

    def set_context(self, values: Mapping[str, np.ndarray]) -> None:
        """Bind the streams' context once; every step and prefill reads it from there."""
        if self.graph:
            raise InputError("context inputs do not run in captured CUDA graphs; load without")
        super().set_context(values)
        device = ("cuda", 0) if self.on_gpu else ("cpu", 0)
        self._context_values = {
            name: _ort().OrtValue.ortvalue_from_numpy(value, *device)
            for name, value in self.context.items()
        }
        self.bindings = [self._binding(k) for k in range(2)]

    def _binding(self, k: int) -> Any:
        binding = self.step_session.io_binding()
        binding.bind_ortvalue_input(self.layout.tokens.name, self._token_value)
        binding.bind_ortvalue_output(self.layout.logits.name, self._logits_value)
        for name, value in self._context_values.items():
            binding.bind_ortvalue_input(name, value)
        for name_in, name_out in self.layout.pairs:
            binding.bind_ortvalue_input(name_in, self.buffers[k][name_in])
            binding.bind_ortvalue_output(name_out, self.buffers[1 - k][name_in])
        return binding

    def step(self) -> np.ndarray:
        """Advance every stream by the tokens in `self.tokens`; return logits (B, V) (a view)."""
        if self.graph:
            self._token_value.update_inplace(self.tokens)
            self.step_session.run_with_iobinding(
                self.bindings[self.current], self.run_options[self.current]
            )
            self.logits[...] = self._logits_value.numpy()
        else:
            self.step_session.run_with_iobinding(self.bindings[self.current])
        self.current ^= 1
        return self.next_logits

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Feed (B, T) token ids (in calls of at most PREFILL_CHUNK steps); return the last step's
        logits (B, V)."""
        for piece in prefill_chunks(ids, self.batch, self.layout.contract.most(TIME)):
            self._prefill_call(piece)
        return self.next_logits

    def _prefill_call(self, ids: np.ndarray) -> None:
        self._check_context()
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.layout.tokens.name, self.layout.token_feed(ids))
        for name, value in self._context_values.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(self.layout.logits.name, "cpu")
        live, spare = self.buffers[self.current], self.buffers[1 - self.current]
        for name_in, name_out in self.layout.pairs:
            binding.bind_ortvalue_input(name_in, live[name_in])
            binding.bind_ortvalue_output(name_out, spare[name_in])
        self.session.run_with_iobinding(binding, self.uncaptured)
        self.current ^= 1
        self.next_logits[...] = self.layout.last_logits(binding.get_outputs()[0].numpy())

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: value.numpy().copy() for name, value in self.buffers[self.current].items()}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        live = self.buffers[self.current]
        for name, arr in checked_state(state, self.state_shapes).items():
            live[name].update_inplace(arr)

    def reset(self) -> None:
        self.set_state(self.layout.zero_state(self.batch))
