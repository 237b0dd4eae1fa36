"""`edgekit bench --compare BASELINE.json`: which rows got slower than a saved run, for CI gates.

Rows are matched by (backend, case). A row regressed when its median is more than
`max_regression` slower than the baseline's and its 95% interval lies wholly above the baseline's
median scaled by that allowance, so a noisy row is not called a regression on its median alone.
Compare runs from the same machine: across machines the ratio measures the machines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekit.errors import InputError


def parse_regression(text: str) -> float:
    """ "10%" or "0.1" -> 0.1."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 10:
        raise InputError(f"--max-regression must be like 10% or 0.1, got {text!r}")
    return value


def read_baseline(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"--compare {path}: not a readable bench JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != "edgekit.bench":
        raise InputError(f"--compare {path}: not an edgekit bench document (edgekit bench --json)")
    return doc


def compare(doc: dict[str, Any], baseline: dict[str, Any], max_regression: float) -> list[dict]:
    """One entry per row present in both runs: both medians, the ratio, and the verdict."""
    before = {(r["backend"], r["case"]): r for r in baseline.get("results", [])}
    out = []
    for r in doc["results"]:
        base = before.get((r["backend"], r["case"]))
        if base is None:
            continue
        allowed = base["p50_us"] * (1 + max_regression)
        lo = (r.get("p50_ci95_us") or [r["p50_us"]])[0]
        out.append(
            {
                "backend": r["backend"],
                "case": r["case"],
                "baseline_p50_us": base["p50_us"],
                "p50_us": r["p50_us"],
                "ratio": r["p50_us"] / base["p50_us"],
                "regressed": r["p50_us"] > allowed and lo > allowed,
            }
        )
    return out


def lines(rows: list[dict], max_regression: float) -> list[str]:
    head = f"compared with the baseline (allowed: {max_regression:.0%} slower at the median)"
    body = [
        f"  {r['backend']:<20} {r['case']:<18} {r['baseline_p50_us']:9.1f} -> {r['p50_us']:9.1f} us "
        f"({r['ratio']:.2f}x){'  REGRESSED' if r['regressed'] else ''}"
        for r in rows
    ]
    return [head, *body] if rows else [head, "  no row of this run is in the baseline"]
