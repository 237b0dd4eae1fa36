"""Same-process timing shared by export, quantize and the benchmark harness (torch-free)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

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
    names, shuffle = list(calls), random.Random(0)
    while time.perf_counter() < end:
        shuffle.shuffle(names)  # a new order each turn: no call always follows the same one
        for name in names:
            call = calls[name]
            for _ in range(block):
                start = time.perf_counter_ns()
                call()
                times[name].append((time.perf_counter_ns() - start) / 1e3)
    return {k: float(np.median(t)) for k, t in times.items()}


def paired_ratio(
    candidate: Callable[[], object],
    baseline: Callable[[], object],
    rounds: int = 15,
    seconds: float = 1.5,
    warmup: int = 20,
) -> dict[str, Any]:
    """How `candidate`'s call time compares with `baseline`'s, robust to load: `rounds` rounds,
    each timing both in alternating order for an equal share of `seconds`; per round the ratio of
    their medians. Returns both medians (us), the median ratio and a 95% confidence interval for it
    (bootstrap over rounds, fixed seed): a choice made on the interval's bounds does not flip when
    one round is disturbed."""
    for call in (candidate, baseline):
        for _ in range(warmup):
            call()
    share = seconds / (2 * rounds)
    ratios: list[float] = []
    medians: dict[str, list[float]] = {"candidate": [], "baseline": []}
    for r in range(rounds):
        order = [("candidate", candidate), ("baseline", baseline)]
        for name, call in order if r % 2 == 0 else order[::-1]:
            times: list[float] = []
            end = time.perf_counter() + share
            while time.perf_counter() < end or len(times) < 5:
                start = time.perf_counter_ns()
                call()
                times.append((time.perf_counter_ns() - start) / 1e3)
            medians[name].append(float(np.median(times)))
        ratios.append(medians["candidate"][-1] / medians["baseline"][-1])
    drawn = np.random.default_rng(0).choice(ratios, size=(2000, rounds))
    low, high = np.percentile(np.median(drawn, axis=1), [2.5, 97.5])
    return {
        "candidate_us": float(np.median(medians["candidate"])),
        "baseline_us": float(np.median(medians["baseline"])),
        "ratio": float(np.median(ratios)),
        "ci95": [float(low), float(high)],
        "rounds": rounds,
    }
