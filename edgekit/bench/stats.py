"""Latency statistics over per-iteration samples (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

NOISY_CV = 0.25  # stdev / mean above this: the machine was busy; quote medians, rerun for tails


def summarize(samples_ns: list[int], items_per_call: int) -> dict[str, Any]:
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    mean = float(us.mean())
    stdev = float(us.std(ddof=1)) if len(us) > 1 else 0.0
    cv = stdev / mean if mean > 0 else 0.0
    return {
        "n": len(us),
        "min_us": float(us.min()),
        "p50_us": float(np.percentile(us, 50)),
        "p90_us": float(np.percentile(us, 90)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
        "mean_us": mean,
        "stdev_us": stdev,
        "cv": cv,
        "noisy": cv > NOISY_CV,
        "throughput_per_s": items_per_call / (float(np.percentile(us, 50)) / 1e6),
    }
