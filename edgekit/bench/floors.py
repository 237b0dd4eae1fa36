"""The floor under a recurrent step: numpy matrix products over the same weights, in the same run.

A one-token step of a recurrent model must at least read every weight matrix once and multiply it
by the step's inputs: at batch 1 a GEMV per matrix, with B streams a GEMM. `floor_cases` times
exactly that (numpy's BLAS, preallocated outputs, no gate math, no graph) over every float weight
matrix of the bundle's graph, so each runtime row can say how far it is from that floor
(`vs_floor`). The floor is a reference to compare against, not a bound no runtime can beat: a
runtime that fuses gates or uses its own kernels may come in under it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.bench.cases import Case

FLOOR = "numpy-floor"


def weight_matrices(graph: Path) -> list[np.ndarray]:
    """Every float32 initializer with two or more dims, as (out, in) matrices (leading 1s dropped;
    ONNX RNN ops stack their gates as (directions, G, in))."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    mats = []
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or len(init.dims) < 2:
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
