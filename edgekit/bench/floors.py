"""The floor under a recurrent step: numpy matrix products over the same weights, in the same run.

A one-token step of a recurrent model must at least read every weight matrix once and multiply it
by the step's inputs: at batch 1 a GEMV per matrix, with B streams a GEMM. `floor_cases` times
exactly that (numpy's BLAS, preallocated outputs, no gate math, no graph) over every float weight
matrix of the bundle's graph, so each runtime row can say how far it is from that floor
(`vs_floor`). The floor is a reference to compare against, not a bound no runtime can beat: a
runtime that fuses gates or uses its own kernels may come in under it.

Above every floor sits the machine's FMA peak: cores x fp32 lanes x 2 (a multiply and an add) x FMA
units x clock. Each recurrent row reports the fraction of it that its weight products reach
(`of_peak`), so a reader sees how far from the hardware a row is, and why batching pays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bench.cases import Case

FLOOR = "numpy-floor"


def weight_matrices(graph: Path) -> list[np.ndarray]:
    """Every float32 initializer with two or more dims that some node multiplies, as (out, in)
    matrices (leading 1s dropped; ONNX RNN ops stack their gates as (directions, G, in)). A table
    only ever read by Gather (an embedding, the step graph's token table) is a row lookup, not a
    product, and is left out."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            consumers.setdefault(name, set()).add(node.op_type if k == 0 else "other")
    mats = []
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or len(init.dims) < 2:
            continue
        if consumers.get(init.name) == {"Gather"}:
            continue
        w = numpy_helper.to_array(init)
        mats.append(w.reshape(-1, w.shape[-1]) if w.ndim > 2 else w)
    return mats


def floor_cases(graph: Path, batches: list[int]) -> list[Case]:
    """One case per stream count, named like the runtimes' bound step so rows line up."""
    mats = [np.ascontiguousarray(w.T) for w in weight_matrices(graph)]  # (in, out)
    rng = np.random.default_rng(0)
    cases = []
    for b in batches:
        xs = [rng.standard_normal((b, w.shape[0])).astype(np.float32) for w in mats]
        outs = [np.empty((b, w.shape[1]), np.float32) for w in mats]

        def step(xs: list = xs, outs: list = outs) -> None:
            for x, w, out in zip(xs, mats, outs, strict=True):
                np.matmul(x, w, out=out)

        cases.append(Case(FLOOR, f"step bound B={b}", b, b, step))
    return cases


def add_floor_ratios(results: list[dict]) -> None:
    """vs_floor = this row's p50 / the floor's p50 for the same case."""
    floor = {r["case"]: r["p50_us"] for r in results if r["backend"] == FLOOR}
    for r in results:
        ref = floor.get(r["case"].replace("step host", "step bound"))
        r["vs_floor"] = r["p50_us"] / ref if ref and r["backend"] != FLOOR else None


FMA_UNITS = 2  # FMA pipes per core: AMD Zen 2 and later, Intel Haswell and later (not detectable)


def fma_peak(isa: list[str], cores: int, cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The machine's fp32 FMA peak in GFLOP/s, with what it assumes; gflops None where unknown."""
    mhz = None
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    flags = set(next((x.split(":", 1)[1].split() for x in lines if x.startswith("flags")), []))
    amd = any("AuthenticAMD" in x for x in lines if x.startswith("vendor_id"))
    # AMD Zen 4 runs AVX-512 on 256-bit FMA units (Zen 5, with vp2intersect, has 512-bit ones)
    wide = "avx512f" in isa and not (amd and "avx512_vp2intersect" not in flags)
    lanes = 16 if wide else 8 if {"avx2", "fma"} <= set(isa) else None
    clocks = [line.split(":", 1)[1] for line in lines if line.startswith("cpu MHz")]
    if clocks:  # absent on many ARM kernels
        mhz = max(float(c) for c in clocks)
    # physical cores: SMT siblings share their core's FMA units
    physical = {
        (p.split(":")[1].strip(), c.split(":")[1].strip())
        for p, c in zip(
            (x for x in lines if x.startswith("physical id")),
            (x for x in lines if x.startswith("core id")),
            strict=False,
        )
    }
    cores = len(physical) or cores
    known = lanes is not None and mhz is not None
    return {
        "gflops": cores * lanes * 2 * FMA_UNITS * mhz / 1e3 if known else None,  # type: ignore[operator]
        "cores": cores,
        "fp32_lanes": lanes,
        "fma_units_per_core": FMA_UNITS,
        "mhz": mhz,
        "how": "cores x fp32 lanes x 2 x FMA units per core (assumed) x the clock /proc/cpuinfo "
        "reports (turbo may run above it)",
        "numpy_sgemm_gflops": measured_sgemm_gflops(),
    }


def measured_sgemm_gflops(n: int = 1024, repeats: int = 3) -> float:
    """What numpy's BLAS reaches on one large fp32 GEMM on all cores (best of `repeats`): the
    practical ceiling, beside the FMA peak it is measured against."""
    import time

    a = np.ones((n, n), np.float32)
    out = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up the BLAS threads
        t0 = time.perf_counter()
        np.matmul(a, a, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def step_flops(graph: Path) -> int:
    """Floating-point operations of one stream's step over every weight matrix (2 per weight)."""
    return sum(2 * w.size for w in weight_matrices(graph))


def add_peak_fractions(
    results: list[dict],
    flops_per_stream: int,
    peak: dict[str, Any],
    threads: int | None = None,
    vnni: bool = False,
    bf16_per_lane: int | None = None,
) -> None:
    """gflops (weight products only) and of_peak for every one-token step row, against the peak
    of the cores the row could use (`threads`, else all) and of its precision: int8 rows against
    the int8 rate (VNNI: four int8 products per fp32 lane; unknown without it), bf16 rows against
    `bf16_per_lane` products per fp32 lane (unknown where None)."""
    rates = {"int8": 4 if vnni else None, "bf16": bf16_per_lane}
    per_core = peak["gflops"] / peak["cores"] if peak.get("gflops") and peak.get("cores") else None
    for r in results:
        if not r["case"].startswith("step"):
            continue
        r["gflops"] = flops_per_stream * r["batch"] / (r["p50_us"] * 1e3)
        used = min(threads or peak["cores"], peak["cores"]) if per_core else 0
        scale = rates.get(r.get("precision") or "fp32", 1)
        top = per_core * used * scale if per_core and scale else None
        r["peak_gflops"] = top
        r["of_peak"] = r["gflops"] / top if top else None
