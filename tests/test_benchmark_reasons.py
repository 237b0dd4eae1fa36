"""The reasons RESULTS.md gives for a missed target come from a real profile and the run's rows."""

from __future__ import annotations

from pathlib import Path

from benchmarks import why
from benchmarks.targets import peer_targets


def test_a_step_graph_profile_splits_products_from_the_small_nodes(tiny_bundles: dict[str, Path]):
    graph = tiny_bundles["charlm"] / "model.step.onnx"
    profile = why.ort_profile(graph, batch=1, threads=1, calls=50)
    products, rest = why.split(profile)
    assert profile["nodes"] > profile["product_nodes"] >= 2  # the recurrent products and the head
    assert products > 0 and rest > 0
    assert abs(products + rest - profile["wall_us"]) < 1e-6 * profile["wall_us"]
    reason = why.over_floor(profile, floor_us=products)
    assert f"{profile['product_nodes']} products" in reason and "1.00x the floor" in reason


def _row(backend: str, p50: float, ci: tuple[float, float], **extra) -> dict:
    return {"backend": backend, "case": "step bound B=1", "p50_us": p50, "p50_ci95_us": ci, **extra}


def test_a_near_miss_is_read_against_both_intervals():
    ours = _row("openvino bf16", 101.0, (99.0, 103.0))
    assert "overlap: a tie" in why.tie(ours, _row("p", 100.0, (98.0, 102.0)))
    assert "do not overlap" in why.tie(ours, _row("p", 90.0, (89.0, 91.0)))


def test_a_missed_step_target_names_where_the_time_goes(tiny_bundles: dict[str, Path]):
    graph = tiny_bundles["charlm"] / "model.step.onnx"
    profile = why.ort_profile(graph, batch=1, threads=1, calls=50)
    ours = _row("ort-cpu", 200.0, (195.0, 205.0), vs_floor=2.0, speedup_vs_torch=3.0)
    doc = {"results": [ours, _row("numpy-floor", 100.0, (99.0, 101.0))]}
    lines = peer_targets({"charlm-lstm": doc}, {"charlm-lstm": {"fp32": profile}})
    (floor_line,) = [x for x in lines if "GEMV floor" in x]
    _target, measured, met, reason = [c.strip() for c in floor_line.strip("|").split("|")]
    assert (measured, met) == ("2.00x (200.0 vs 100.0 us)", "no")
    assert reason.startswith("ORT's profile") and "nodes" in reason
