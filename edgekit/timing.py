"""Same-process timing shared by export, quantize and the benchmark harness (torch-free)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def interleaved_medians(
    calls: dict[str, Callable[[], object]], seconds: float, warmup: int = 20, block: int = 25
) -> dict[str, float]:
    """Median microseconds per call of each of `calls`, taking turns `block` calls at a time for
    `seconds`: the quick same-process comparison that export and quantize record (a ratio of two
    medians measured side by side, so machine drift hits both alike)."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    for call in calls.values():
        for _ in range(warmup):
            call()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for name, call in calls.items():
            for _ in range(block):
                start = time.perf_counter_ns()
                call()
                times[name].append((time.perf_counter_ns() - start) / 1e3)
    return {k: float(np.median(t)) for k, t in times.items()}
