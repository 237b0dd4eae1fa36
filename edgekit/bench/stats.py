"""Latency statistics over per-iteration samples (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

NOISY_CV = 0.25  # stdev / mean above this: the machine was busy; quote medians, rerun for tails


def median_ci(sorted_us: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """A distribution-free 95% confidence interval of the median: the order statistics
    n/2 -+ z sqrt(n)/2 (the binomial bound; needs no assumption about the latency distribution)."""
    n = len(sorted_us)
    half = z * np.sqrt(n) / 2
    lo = max(0, int(np.floor(n / 2 - half)))
    hi = min(n - 1, int(np.ceil(n / 2 + half)))
    return float(sorted_us[lo]), float(sorted_us[hi])


def summarize(
    samples_ns: list[int], items_per_call: int, wall_ns: int | None = None
) -> dict[str, Any]:
    """Percentiles, the median's 95% interval, spread, and throughput: items over the wall time the
    timed calls took (`wall_ns`, timer reads included), not items over the median."""
    us = np.sort(np.asarray(samples_ns, dtype=np.float64) / 1e3)
    mean = float(us.mean())
    stdev = float(us.std(ddof=1)) if len(us) > 1 else 0.0
    cv = stdev / mean if mean > 0 else 0.0
    wall_s = (wall_ns if wall_ns is not None else float(us.sum()) * 1e3) / 1e9
    return {
        "n": len(us),
        "min_us": float(us[0]),
        "p50_us": float(np.percentile(us, 50)),
        "p50_ci95_us": list(median_ci(us)),
        "p90_us": float(np.percentile(us, 90)),
        "p95_us": float(np.percentile(us, 95)),
        "p99_us": float(np.percentile(us, 99)),
        "p99_9_us": float(np.percentile(us, 99.9)),
        "max_us": float(us[-1]),
        "mean_us": mean,
        "stdev_us": stdev,
        "cv": cv,
        "noisy": cv > NOISY_CV,
        "wall_s": wall_s,
        "throughput_per_s": items_per_call * len(us) / wall_s if wall_s > 0 else 0.0,
    }
