"""Next-token sampling over logits rows (numpy): greedy, temperature, top-k, top-p."""

from __future__ import annotations

import math

import numpy as np

from edgekit.errors import InputError

MAX_SEED = 2**32  # seeds are 0 <= seed < 2**32, the range every RNG here accepts


def check_seed(seed: int | None) -> None:
    if seed is not None and not (isinstance(seed, int) and 0 <= seed < MAX_SEED):
        raise InputError(f"seed must be an integer 0 <= seed < 2**32, got {seed!r}")


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not math.isfinite(temperature) or temperature < 0:
        raise InputError(f"temperature must be >= 0 and finite (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise InputError(f"top_p must be in (0, 1], got {top_p}")


def sample(
    logits: np.ndarray,  # (B, V)
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """One token id per row (B,)."""
    if temperature == 0:
        return logits.argmax(axis=-1)
    # shift first, then scale: every z <= 0 and the top one is 0, so a tiny (even subnormal)
    # temperature sends the others to -inf, never inf - inf = NaN; exp then keeps the top
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    with np.errstate(over="ignore", divide="ignore"):
        z /= temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1:
        order = np.argsort(-p, axis=-1)
        sorted_p = np.take_along_axis(p, order, axis=-1)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop_sorted = np.cumsum(sorted_p, axis=-1) - sorted_p >= top_p
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        p = np.where(drop, 0.0, p)
        p /= p.sum(axis=-1, keepdims=True)
    u = rng.random((p.shape[0], 1))
    return np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), p.shape[-1] - 1)
