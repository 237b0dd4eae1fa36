"""What bench times: one callable per (backend, case), built for the bundle's task.

Each backend is set up the way a careful user would run it (its `prepared` call: inputs bound once,
no per-call validation; its stepper for generation), so the speedup column compares the runtimes,
not glue code. Which backends exist, and whether they can run here, is the registry's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.bundle.io import IOContract
from edgekit.runtimes.base import Backend
from edgekit.runtimes.stepper import HostStepper, steady_greedy

PREFILL_LENGTHS = (16, 128, 512)


@dataclass
class Case:
    backend: str
    name: str  # e.g. "batch 8", "step bound B=1", "prefill T=128"
    batch: int
    items_per_call: int  # images, rows or tokens produced per call
    call: Callable[[], Any]
    precision: str | None = None  # a peer's own precision (None: the backend's, else fp32)


def build_cases(
    backend: str,
    handle: Backend,
    contract: IOContract,
    task: str,
    batches: list[int],
    reference: bool = False,
) -> list[Case]:
    """The cases of one backend. The torch reference steps with state and argmax on its device;
    the runtimes are timed both on their bound stepper and with state through the host."""
    rng = np.random.default_rng(0)
    cases: list[Case] = []
    if task != "generate":
        for b in batches:
            feeds = contract.example(b, 1, rng)
            cases.append(Case(backend, f"batch {b}", b, b, handle.prepared(feeds)))
            if backend == "ort-cuda":
                cases += _ort_transfer_split(handle, feeds, b)
        return cases
    for b in batches:
        if reference:
            cases.append(Case(backend, f"step B={b}", b, b, handle.greedy_step(b)))
        else:
            host = steady_greedy(HostStepper(handle, b))
            cases.append(Case(backend, f"step bound B={b}", b, b, handle.greedy_step(b)))
            cases.append(Case(backend, f"step host B={b}", b, b, host))
    layout = handle.layout
    room = contract.max_positions or max(PREFILL_LENGTHS)
    for t in (t for t in PREFILL_LENGTHS if t <= room):  # a KV cache holds at most max_length
        ids = rng.integers(*contract.int_range(layout.tokens), size=(1, t))
        drawn = contract.example(1, 1, rng)
        context = {n: drawn[n] for n in contract.context}
        if contract.step_only:  # one token per call: its prompts are fed by stepping
            call = _prefill_by_stepping(handle, ids, context)
        else:
            feeds = {**layout.zero_state(1), **context}
            feeds[layout.tokens.name] = layout.token_feed(ids)
            call = handle.prepared(feeds)
        cases.append(Case(backend, f"prefill T={t}", 1, t, call))
    return cases


def _prefill_by_stepping(
    handle: Backend, ids: np.ndarray, context: dict[str, np.ndarray]
) -> Callable[[], Any]:
    """A prompt (1, T) fed from zero state through the backend's stepper, one call per token."""
    stepper = handle.stepper(1)
    if context:
        stepper.set_context(context)

    def prefill() -> Any:
        stepper.reset()
        return stepper.prefill(ids)

    return prefill


def _ort_transfer_split(handle: Any, feeds: dict[str, np.ndarray], batch: int) -> list[Case]:
    """H2D, compute and D2H of one ONNX Runtime CUDA call, timed apart with device-bound values."""
    import onnxruntime as ort

    ((name, host),) = feeds.items()
    out_name = handle.contract.output_names[0]
    device_in = ort.OrtValue.ortvalue_from_numpy(host, "cuda", 0)
    binding = handle.session.io_binding()
    binding.bind_ortvalue_input(name, device_in)
    binding.bind_output(out_name, "cuda")
    handle.session.run_with_iobinding(binding)
    device_out = binding.get_outputs()[0]
    binding.bind_ortvalue_output(out_name, device_out)

    def compute() -> None:
        handle.session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return [
        Case(
            "ort-cuda", f"batch {batch} h2d", batch, batch, lambda: device_in.update_inplace(host)
        ),
        Case("ort-cuda", f"batch {batch} compute", batch, batch, compute),
        Case("ort-cuda", f"batch {batch} d2h", batch, batch, device_out.numpy),
    ]
