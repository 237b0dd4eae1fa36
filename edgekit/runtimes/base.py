"""The backend base class: `run` validates feeds against the I/O contract, subclasses implement `_run`.

Beyond the plain call a backend offers what the task APIs and bench build on: `stepper(batch)`, the
allocation-free recurrent step (state kept by the backend between calls), and `prepared(feeds)`, a
call with its inputs bound once, as a tuned application would run it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

import numpy as np

from edgekit.bundle.io import IOContract
from edgekit.bundle.layout import Layout
from edgekit.errors import InputError
from edgekit.rollout import Stepper


class Backend:
    name = "backend"
    device = "cpu"  # where it computes: "cpu", or a GPU ("cuda", "tensorrt")

    def __init__(self, contract: IOContract) -> None:
        self.contract = contract

    @cached_property
    def layout(self) -> Layout:
        """Where batch and time sit in a recurrent bundle's tensors (an error for other bundles)."""
        return self.contract.layout()

    def run(self, feeds: Mapping[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        """Run the graph on numpy feeds. `check=False` skips validation (hot loops that built the
        feeds from this backend's own outputs)."""
        if check:
            self.check_feeds(feeds)
        return self._run(feeds)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError  # abstract: each backend implements the call

    def stepper(self, batch: int) -> Stepper:
        """A recurrent stepper for `batch` streams: `tokens`/`next_tokens` in, `step()`,
        `next_logits` (B, V) out, `prefill`, `get_state`/`set_state`/`reset`."""
        from edgekit.runtimes.stepper import HostStepper

        return HostStepper(self, batch)

    def prepared(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """A call on fixed `feeds`, set up once the fastest way this backend allows."""
        frozen = dict(feeds)
        return lambda: self._run(frozen)

    def greedy_step(self, streams: int) -> Callable[[], object]:
        """One greedy generation step of `streams` streams: argmax of the last logits fed back,
        repeatable without end (stepper.steady_greedy)."""
        from edgekit.runtimes.stepper import steady_greedy

        return steady_greedy(self.stepper(streams))

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Raise one InputError listing every problem: names, dtypes, ranks, sizes, symbolic dims."""
        problems = []
        expected = {t.name: t for t in self.contract.inputs}
        missing = [n for n in expected if n not in feeds]
        unexpected = [n for n in feeds if n not in expected]
        if missing:
            problems.append(f"missing inputs {missing}")
        if unexpected:
            problems.append(f"unexpected inputs {unexpected} (expected {list(expected)})")
        sizes: dict[str, tuple[int, str]] = {}
        empty_ok = {p.grows for p in self.contract.growing}  # a KV cache starts empty
        for name, spec in expected.items():
            if name not in feeds:
                continue
            value = feeds[name]
            if not isinstance(value, np.ndarray):
                problems.append(f"{name}: expected a numpy array, got {type(value).__name__}")
                continue
            if value.dtype != np.dtype(spec.dtype):
                problems.append(f"{name}: dtype {value.dtype}, expected {spec.dtype}")
            if value.ndim != len(spec.shape):
                problems.append(
                    f"{name}: shape {value.shape} has rank {value.ndim}, expected rank "
                    f"{len(spec.shape)} {list(spec.shape)}"
                )
                continue
            for axis, (got, want) in enumerate(zip(value.shape, spec.shape, strict=True)):
                if isinstance(want, int) and got != want:
                    problems.append(
                        f"{name}: axis {axis} is {got}, expected {want} {list(spec.shape)}"
                    )
                elif isinstance(want, str):
                    most = self.contract.axes[want].max
                    if got < (0 if want in empty_ok else 1):
                        problems.append(f"{name}: axis {axis} ({want}) is {got}, expected >= 1")
                    elif most is not None and got > most:
                        problems.append(
                            f"{name}: axis {axis} ({want}) is {got}, expected <= {most}"
                            + (" (a step-only graph: one token per call)" if most == 1 else "")
                        )
                    seen = sizes.setdefault(want, (got, name))
                    if seen[0] != got:
                        problems.append(
                            f"{name}: axis {axis} ({want}) is {got}, but {seen[1]} has {want} = {seen[0]}"
                        )
        if problems:
            raise InputError("invalid inputs: " + "; ".join(problems))
