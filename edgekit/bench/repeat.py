"""`edgekit bench --repeat N`: the whole comparison in N fresh processes, each ratio with an interval.

One process's medians share that process's luck (its memory layout, the core it landed on, what the
machine did meanwhile); a ratio between two rows is only as sure as its spread over processes. Each
run here is a child process doing exactly what a single `edgekit bench` does; the parent keeps the
first run's document and adds, per row, every run's median and a 95% t-interval of their mean, for
the latency and for the speedup against torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bench.runner import Budget
from edgekit.errors import CheckFailed, InputError

# Student's t, 0.975 quantile, by degrees of freedom 1..30 (beyond: the normal's 1.96)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060,
        2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def interval(values: list[float]) -> dict[str, Any]:
    """Mean and 95% t-interval of per-process values."""
    v = np.asarray(values, np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": mean, "ci95": [mean, mean], "values": values}
    t = T975[len(v) - 2] if len(v) - 1 <= len(T975) else 1.96
    half = t * float(v.std(ddof=1)) / np.sqrt(len(v))
    return {"mean": mean, "ci95": [mean - half, mean + half], "values": values}


def run_repeated(
    repeat: int,
    bundle: Path,
    backends: list[str] | None,
    batches: list[int],
    budget: Budget,
    threads: int | None,
    precision: str,
) -> dict[str, Any]:
    if repeat < 2:
        raise InputError(f"--repeat must be >= 2 (one run needs no repeat), got {repeat}")
    params = {
        "bundle": str(bundle),
        "backends": backends,
        "batches": batches,
        "budget": asdict(budget),
        "threads": threads,
        "precision": precision,
    }
    docs = []
    with tempfile.TemporaryDirectory(prefix="edgekit-repeat-") as tmp:
        for i in range(repeat):
            out = Path(tmp) / f"run{i}.json"
            code = "import sys; from edgekit.bench.repeat import child; child(sys.argv[1], sys.argv[2])"
            done = subprocess.run(
                [sys.executable, "-c", code, json.dumps(params), str(out)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
                raise CheckFailed(f"bench run {i + 1} of {repeat} failed: {tail}")
            docs.append(json.loads(out.read_text()))
    return aggregate(docs)


def child(params_json: str, out: str) -> None:
    """One run in this (fresh) process; the document goes to `out`, without raw samples."""
    from edgekit.bench.core import run_bench

    p = json.loads(params_json)
    doc = run_bench(
        p["bundle"],
        p["backends"],
        p["batches"],
        Budget(**p["budget"]),
        p["threads"],
        cold_start=False,
        precision=p["precision"],
    )
    for row in doc["results"]:
        row.pop("samples_us", None)
    Path(out).write_text(json.dumps(doc))


def aggregate(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first document, each row with `repeat`: its median and speedup in every run."""
    first = docs[0]
    for row in first["results"]:
        key = (row["backend"], row["case"])
        mine = [
            r for d in docs for r in d["results"] if (r["backend"], r["case"]) == key
        ]  # the same row in every run
        row["repeat"] = {"runs": len(mine), "p50_us": interval([r["p50_us"] for r in mine])}
        speedups = [r["speedup_vs_torch"] for r in mine if r.get("speedup_vs_torch")]
        if len(speedups) == len(mine):
            row["repeat"]["speedup_vs_torch"] = interval(speedups)
    first["settings"]["repeat"] = len(docs)
    return first


def lines(doc: dict[str, Any]) -> list[str]:
    n = doc["settings"].get("repeat", 1)
    out = [f"over {n} fresh processes (mean of per-process medians, 95% t-interval):"]
    for row in doc["results"]:
        rep = row.get("repeat")
        if not rep:
            continue
        lat = rep["p50_us"]
        text = (
            f"  {row['backend']:<20} {row['case']:<18} p50 {lat['mean']:9.1f} us "
            f"[{lat['ci95'][0]:.1f}, {lat['ci95'][1]:.1f}]"
        )
        if "speedup_vs_torch" in rep and row["backend"] not in ("torch", "torch-cuda"):
            sp = rep["speedup_vs_torch"]
            text += f"; vs torch {sp['mean']:.2f}x [{sp['ci95'][0]:.2f}, {sp['ci95'][1]:.2f}]"
        out.append(text)
    return out
