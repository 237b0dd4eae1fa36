"""Where the time goes, for the targets a run misses: ONNX Runtime's own profile of a step graph,
and the reasons RESULTS.md gives from it and from the rows of the same run.

A profile times the graph twice at the same batch and thread count: unprofiled calls for the wall
time, then profiled calls for each node's kernel time. The profiler adds a fixed cost to every
node, so its kernel times sum to more than the wall time; shares of the kernel time are what the
reasons use, applied to the bench row's median (`scaled`).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PRODUCTS = (
    "MatMul",
    "Gemm",
    "FusedGemm",
    "FusedMatMul",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QLinearMatMul",
)


def ort_profile(graph: Path, batch: int = 1, threads: int | None = 1, calls: int = 2000) -> dict:
    """The step graph at `batch` streams, one token, on `threads` intra-op threads (None: ONNX
    Runtime's default): wall median (us), node count, and kernel time by op type (us, medians)."""
    import onnxruntime as ort

    from edgekit.iospec import IOContract
    from edgekit.manifest import read_manifest

    contract = IOContract.from_manifest(read_manifest(graph.parent, verify=False))
    feeds = contract.feeds({"batch": batch, "time": 1}, np.random.default_rng(0))

    def session(profile: bool) -> Any:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "step")
        return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    plain = session(False)
    for _ in range(min(calls, 200)):
        plain.run(None, feeds)
    wall = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        plain.run(None, feeds)
        wall.append((time.perf_counter_ns() - start) / 1e3)
    profiled = session(True)
    for _ in range(calls):
        profiled.run(None, feeds)
    durations: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    for event in json.loads(Path(profiled.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            durations.setdefault(event["name"], []).append(event["dur"])
            ops[event["name"]] = event["args"]["op_name"]
    by_op: dict[str, float] = {}
    for name, times in durations.items():
        by_op[ops[name]] = by_op.get(ops[name], 0.0) + float(np.median(times))
    products = sum(1 for name in durations if ops[name] in PRODUCTS)
    return {
        "graph": graph.name,
        "batch": batch,
        "threads": threads,
        "wall_us": float(np.median(wall)),
        "nodes": len(durations),
        "product_nodes": products,
        "by_op": by_op,
    }


def scaled(profile: dict, row_us: float) -> dict:
    """The profile read against a bench row: its kernel-time shares applied to the row's median
    (the bound stepper's time, which the profile's plain session.run does not reproduce)."""
    return {**profile, "wall_us": row_us}


def split(profile: dict) -> tuple[float, float]:
    """(products, everything else) in us of wall time, by their shares of kernel time."""
    kernel = sum(profile["by_op"].values()) or 1.0
    products = sum(us for op, us in profile["by_op"].items() if op in PRODUCTS)
    share = products / kernel
    return profile["wall_us"] * share, profile["wall_us"] * (1 - share)


def _top(profile: dict, n: int = 3) -> str:
    kernel = sum(profile["by_op"].values()) or 1.0
    rest = [(us, op) for op, us in profile["by_op"].items() if op not in PRODUCTS]
    return ", ".join(f"{op} {us / kernel:.0%}" for us, op in sorted(rest, reverse=True)[:n])


def nodes(profile: dict) -> str:
    products, rest = split(profile)
    others = profile["nodes"] - profile["product_nodes"]
    return (
        f"ORT's profile, by share of kernel time: {profile['product_nodes']} "
        f"products {products:.0f} us; the other {others} nodes {rest:.0f} us, "
        f"{rest / max(others, 1):.1f} us each ({_top(profile)})"
    )


def over_floor(profile: dict, floor_us: float) -> str:
    """Why a step is above its GEMV floor."""
    products, _ = split(profile)
    return (
        f"{nodes(profile)}; the products alone are {products / floor_us:.2f}x the floor, so the "
        "excess is the fixed cost of the small nodes (gate math, state Split/Concat), not the "
        "arithmetic"
    )


def torch_short(torch_us: float, want: float, floor_us: float, profile: dict | None) -> str:
    """Why a step is not `want` times faster than torch eager."""
    need = torch_us / want
    text = f"{want:g}x torch eager ({torch_us:.0f} us) needs {need:.0f} us, {need / floor_us:.2f}x"
    text += " the GEMV floor"
    if need < floor_us:
        text += ", below the weights' own memory traffic"
    return text + (f"; {nodes(profile)}" if profile else "")


def int8_short(int8: dict, fp32: dict, want: float = 0.5) -> str:
    """Why an int8 step is not `want` of the fp32 step's time."""
    p8, rest8 = split(int8)
    p32, _ = split(fp32)
    need = want * fp32["wall_us"]
    text = (
        f"int8: {nodes(int8)}; int8's products take {p8 / max(p32, 1e-9):.2f}x fp32's "
        f"({p32:.0f} us), but {want:g}x fp32 needs {need:.0f} us"
    )
    if rest8 > need:
        text += f" and int8's non-product nodes alone take {rest8:.0f} us"
    return text


def streams_short(profile: dict, floor_us: float) -> str:
    """Why a many-stream step is slower than numpy's GEMM over the same weights."""
    products, _ = split(profile)
    return f"{nodes(profile)}; the products alone are {products / floor_us:.2f}x numpy's GEMM floor"


def tie(ours: dict, peer: dict) -> str:
    """A near miss read against both rows' 95% intervals of the median."""
    low, high = ours.get("p50_ci95_us") or (None, None)
    peer_low, peer_high = peer.get("p50_ci95_us") or (None, None)
    gap = ours["p50_us"] / peer["p50_us"] - 1
    text = f"{gap:+.1%} on the medians"
    if low is None or peer_low is None:
        return text
    overlap = low <= peer_high and peer_low <= high
    return text + (
        f"; the 95% intervals ({low:.0f}-{high:.0f} vs {peer_low:.0f}-{peer_high:.0f} us) "
        + ("overlap: a tie within this run's noise" if overlap else "do not overlap")
    )
