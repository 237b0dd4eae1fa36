"""edgekit bench: trustworthy numbers, every backend listed, clear errors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekit.bench.core import run_bench
from edgekit.bench.runner import Budget
from edgekit.bench.stats import summarize
from edgekit.cli import app
from edgekit.errors import InputError

runner = CliRunner()
QUICK = Budget(warmup=2, iters=10, rounds=2)


@pytest.fixture
def bench_bundles(tiny_bundles: dict[str, Path]) -> dict[str, Path]:
    return tiny_bundles


def test_summary_statistics() -> None:
    s = summarize([1000 * v for v in range(1, 101)], items_per_call=4)  # 1..100 us
    assert s["min_us"] == 1 and s["max_us"] == 100 and s["p50_us"] == pytest.approx(50.5)
    assert s["p99_us"] == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert s["throughput_per_s"] == pytest.approx(4 / 50.5e-6)
    assert s["noisy"] is True  # uniform 1..100 has a CV of ~0.57
    assert s["p90_us"] <= s["p95_us"] <= s["p99_us"] <= s["p99_9_us"] <= s["max_us"]
    lo, hi = s["p50_ci95_us"]  # order statistics 50 -+ 9.8 of 100
    assert lo < s["p50_us"] < hi and (lo, hi) == (41, 61)
    walled = summarize([1000] * 10, items_per_call=2, wall_ns=40_000)  # timer reads cost 2x here
    assert walled["throughput_per_s"] == pytest.approx(20 / 40e-6)  # wall time, not the median


def test_rounds_take_a_new_order_and_every_case_its_share() -> None:
    """No case always runs after the same one (its threads or caches would tilt that row)."""
    from edgekit.bench.cases import Case
    from edgekit.bench.runner import run_rounds

    calls: list[str] = []
    cases = [Case(n, "batch 1", 1, 1, lambda n=n: calls.append(n)) for n in "abcd"]
    budget = Budget(warmup=1, iters=6, rounds=6)
    samples = run_rounds(cases, budget)
    assert [len(samples[i]) for i in range(4)] == [6, 6, 6, 6]
    timed = calls[len(cases) :]  # after each case's one warm-up call: one call per case per round
    orders = {tuple(timed[r * 4 : r * 4 + 4]) for r in range(6)}
    assert all(sorted(order) == list("abcd") for order in orders) and len(orders) > 1


def test_classifier_bench_document(bench_bundles: dict[str, Path]) -> None:
    doc = run_bench(
        bench_bundles["lenet"],
        ["torch", "ort-cpu", "ort-cuda", "trt"],
        [1, 4],
        QUICK,
        threads=1,
        cold_start=True,
    )
    assert doc["schema"] == "edgekit.bench" and doc["schema_version"] == 1
    assert {"cpu", "cores"} <= set(doc["machine"]) and "onnxruntime" in doc["versions"]
    assert doc["settings"]["gc_paused"] and doc["settings"]["interleaved"]
    status = doc["backends"]
    assert status["torch"]["status"] == status["ort-cpu"]["status"] == "ok"
    assert status["ort-cpu"]["cold_start_ms"] > 0 and status["ort-cpu"]["peak_rss_mb"] > 0
    assert status["ort-cpu"]["model_bytes"] > 0
    assert status["trt"]["status"] == "skipped" and status["trt"]["reason"]
    rows = {(r["backend"], r["case"]): r for r in doc["results"]}
    assert set(rows) == {(b, f"batch {n}") for b in ("torch", "ort-cpu") for n in (1, 4)}
    for r in rows.values():
        assert r["n"] == 10 and len(r["samples_us"]) == 10
        assert r["min_us"] <= r["p50_us"] <= r["p90_us"] <= r["p99_us"] <= r["max_us"]
    ort1, torch1 = rows[("ort-cpu", "batch 1")], rows[("torch", "batch 1")]
    assert ort1["speedup_vs_torch"] == pytest.approx(torch1["p50_us"] / ort1["p50_us"])


def test_generation_bench_cases(bench_bundles: dict[str, Path]) -> None:
    doc = run_bench(bench_bundles["charlm"], ["torch", "ort-cpu"], [1, 3], QUICK, cold_start=False)
    cases = {(r["backend"], r["case"]) for r in doc["results"]}
    for b in (1, 3):
        assert {
            ("ort-cpu", f"step bound B={b}"),
            ("ort-cpu", f"step host B={b}"),
            ("torch", f"step B={b}"),
        } <= cases
    for t in (16, 128, 512):
        assert ("ort-cpu", f"prefill T={t}") in cases and ("torch", f"prefill T={t}") in cases
    bound = next(r for r in doc["results"] if r["case"] == "step bound B=3")
    assert bound["items_per_call"] == 3 and bound["speedup_vs_torch"] is not None
    # the floor: numpy products over the same weights, timed in the same rounds
    floor = next(
        r for r in doc["results"] if r["backend"] == "numpy-floor" and r["case"] == "step bound B=3"
    )
    assert bound["vs_floor"] == pytest.approx(bound["p50_us"] / floor["p50_us"])
    assert doc["backends"]["numpy-floor"]["status"] == "ok"
    # the fraction of the machine's FMA peak the weight products reach
    from edgekit.bench.core import floor_graph
    from edgekit.bench.floors import step_flops
    from edgekit.manifest import read_manifest

    flops = step_flops(floor_graph(bench_bundles["charlm"], read_manifest(bench_bundles["charlm"])))
    assert bound["gflops"] == pytest.approx(flops * 3 / (bound["p50_us"] * 1e3))
    peak = doc["machine"]["fma_peak"]
    if peak["gflops"]:
        assert bound["of_peak"] == pytest.approx(bound["gflops"] / peak["gflops"])
    assert peak["numpy_sgemm_gflops"] > 0


CPUINFO = """processor : {n}
vendor_id : {vendor}
cpu MHz : 2500.000
physical id : 0
core id : {core}
flags : fpu avx avx2 fma avx512f {extra}
"""


@pytest.mark.parametrize(
    ("vendor", "extra", "lanes"),
    [
        ("GenuineIntel", "", 16),  # 512-bit FMA units
        ("AuthenticAMD", "", 8),  # Zen 4: AVX-512 on 256-bit units
        ("AuthenticAMD", "avx512_vp2intersect", 16),  # Zen 5
    ],
)
def test_fma_peak_from_cpuinfo(tmp_path: Path, vendor: str, extra: str, lanes: int) -> None:
    from edgekit.bench.floors import fma_peak

    # four logical CPUs on two physical cores (SMT siblings share their core's FMA units)
    text = "\n".join(CPUINFO.format(n=n, vendor=vendor, core=n // 2, extra=extra) for n in range(4))
    (tmp_path / "cpuinfo").write_text(text)
    peak = fma_peak(["avx", "avx2", "fma", "avx512f"], 4, tmp_path / "cpuinfo")
    assert (peak["cores"], peak["fp32_lanes"]) == (2, lanes)
    assert peak["gflops"] == pytest.approx(2 * lanes * 2 * 2 * 2.5)
    assert fma_peak(["sse4_2"], 4, tmp_path / "missing")["gflops"] is None


def test_duration_budget(bench_bundles: dict[str, Path]) -> None:
    doc = run_bench(
        bench_bundles["lenet"],
        ["ort-cpu"],
        [1],
        Budget(warmup=2, iters=None, duration_s=0.05),
        cold_start=False,
    )
    assert doc["results"][0]["n"] >= 10
    with pytest.raises(InputError, match="collects only"):
        run_bench(
            bench_bundles["lenet"],
            ["ort-cpu"],
            [1],
            Budget(warmup=2, iters=None, duration_s=1e-7),
            cold_start=False,
        )


def test_no_backend_available(bench_bundles: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="no backend can run here"):
        run_bench(bench_bundles["lenet"], ["trt"], [1], QUICK)


def _cli(*args: object):
    return runner.invoke(app, ["bench", *(str(a) for a in args)])


def test_cli_writes_every_report(bench_bundles: dict[str, Path], tmp_path: Path) -> None:
    umask = os.umask(0o022)  # reports get the usual file mode, like any file a user writes
    try:
        result = _bench_with_reports(bench_bundles, tmp_path)
    finally:
        os.umask(umask)
    assert result.exit_code == 0, result.output
    assert "ort-cpu" in result.output and "vs torch" in result.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert len(doc["results"]) == 4
    assert "| ort-cpu | batch 1 |" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    modes = {
        name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("r.json", "r.md", "r.png")
    }
    assert modes == dict.fromkeys(modes, 0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md", "r.png"]  # no temp left


def _bench_with_reports(bench_bundles: dict[str, Path], tmp_path: Path):  # type: ignore[no-untyped-def]
    return _cli(
        bench_bundles["lenet"],
        "--backends",
        "torch,ort-cpu",
        "--batch",
        "1,2",
        "--iters",
        10,
        "--rounds",
        2,
        "--no-cold-start",
        "--json",
        tmp_path / "r.json",
        "--markdown",
        tmp_path / "r.md",
        "--plot",
        tmp_path / "r.png",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backends", "ort-npu"], "known backends: torch"),
        (["--batch", "0"], "--batch must be comma-separated positive integers"),
        (["--batch", "x"], "--batch must be comma-separated positive integers"),
        (["--iters", "5"], "at least 10 samples"),
        (["--duration", "0.0000001"], "collects only"),
        (["--iters", "20", "--duration", "1"], "not both"),
        (["--json", "/nonexistent-dir/r.json"], "does not exist"),
        (["--compare", "/nonexistent.json"], "--compare /nonexistent.json: not a readable"),
        (["--max-regression", "lots"], "--max-regression must be like 10% or 0.1"),
        (["--repeat", "0"], "--repeat must be >= 2"),
        (["--repeat", "2", "--plot", "p.png"], "it does not go with --repeat"),
    ],
)
def test_cli_bad_input(bench_bundles: dict[str, Path], args: list[str], message: str) -> None:
    result = _cli(bench_bundles["lenet"], "--backends", "ort-cpu", "--no-cold-start", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_not_a_bundle(tmp_path: Path) -> None:
    result = _cli(tmp_path)
    assert result.exit_code == 2 and "not an edgekit bundle" in result.output


def test_compare_gates_on_a_saved_run(bench_bundles: dict[str, Path], tmp_path: Path) -> None:
    """Against itself nothing regressed; against a baseline 10x faster every row did (exit 1)."""
    args = [bench_bundles["lenet"], "--backends", "ort-cpu", "--batch", "1", "--iters", 30]
    first = _cli(*args, "--no-cold-start", "--json", tmp_path / "base.json")
    assert first.exit_code == 0, first.output
    doc = json.loads((tmp_path / "base.json").read_text())
    assert doc["machine"]["isa"] == [f for f in doc["machine"]["isa"] if f]  # flags listed
    same = _cli(
        *args, "--no-cold-start", "--compare", tmp_path / "base.json", "--max-regression", "900%"
    )
    assert same.exit_code == 0, same.output
    assert "compared with the baseline" in same.output and "REGRESSED" not in same.output
    for row in doc["results"]:
        row["p50_us"] /= 10
    (tmp_path / "fast.json").write_text(json.dumps(doc))
    slower = _cli(*args, "--no-cold-start", "--compare", tmp_path / "fast.json")
    assert slower.exit_code == 1 and "REGRESSED" in slower.output


def test_repeat_runs_fresh_processes_and_gives_intervals(
    bench_bundles: dict[str, Path], tmp_path: Path
) -> None:
    result = _cli(
        bench_bundles["lenet"], "--backends", "torch,ort-cpu", "--batch", "1", "--iters", 10,
        "--rounds", 1, "--repeat", 3, "--json", tmp_path / "r.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "over 3 fresh processes" in result.output and "vs torch" in result.output
    doc = json.loads((tmp_path / "r.json").read_text())
    ort = next(r for r in doc["results"] if r["backend"] == "ort-cpu")
    latency = ort["repeat"]["p50_us"]
    assert ort["repeat"]["runs"] == 3 and len(latency["values"]) == 3
    assert latency["ci95"][0] <= latency["mean"] <= latency["ci95"][1]
    assert len(ort["repeat"]["speedup_vs_torch"]["values"]) == 3


def test_the_floor_leaves_lookup_tables_out(bench_bundles: dict[str, Path]) -> None:
    """A table only read by Gather (the step graph's token table) is a row lookup, not a product."""
    import onnx

    from edgekit.bench.floors import weight_matrices

    graph = bench_bundles["charlm"] / "model.step.onnx"
    model = onnx.load(str(graph))
    gathered = {n.input[0] for n in model.graph.node if n.op_type == "Gather"}
    matrices = [i for i in model.graph.initializer if len(i.dims) >= 2 and i.data_type == 1]
    tables = [i for i in matrices if i.name in gathered]
    assert tables, "the step graph gathers its first layer's gates from a token table"
    assert len(weight_matrices(graph)) == len(matrices) - len(tables)
