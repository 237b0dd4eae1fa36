"""bench's "of FMA peak": against the peak of the cores a row could use and of its precision."""

from __future__ import annotations

import pytest

from edgekit.bench.floors import add_peak_fractions

PEAK = {"gflops": 200.0, "cores": 2}  # 100 GFLOP/s per core


def rows() -> list[dict]:
    step = {"case": "step bound B=1", "batch": 1, "p50_us": 10.0}
    return [{**step, "precision": "fp32"}, {**step, "precision": "int8"},
            {"case": "prefill T=16", "batch": 1, "p50_us": 10.0}]  # fmt: skip


@pytest.mark.parametrize(("threads", "per_fp32_row"), [(1, 100.0), (2, 200.0), (None, 200.0)])
def test_a_row_is_judged_against_the_cores_it_could_use(
    threads: int | None, per_fp32_row: float
) -> None:
    results = rows()
    add_peak_fractions(results, 10_000_000, PEAK, threads, vnni=True)
    fp32, int8, prefill = results
    assert fp32["peak_gflops"] == per_fp32_row
    assert fp32["of_peak"] == pytest.approx(fp32["gflops"] / per_fp32_row)
    assert int8["peak_gflops"] == 4 * per_fp32_row  # VNNI: four int8 products per fp32 lane
    assert "of_peak" not in prefill


def test_int8_has_no_peak_without_vnni() -> None:
    results = rows()
    add_peak_fractions(results, 10_000_000, PEAK, 1, vnni=False)
    assert results[1]["of_peak"] is None and results[0]["of_peak"] is not None


def test_bf16_rows_are_judged_at_avx512_bf16s_rate() -> None:
    step = {"case": "step bound B=1", "batch": 1, "p50_us": 10.0}
    results = [{**step, "precision": "bf16"}, {**step, "precision": "fp32"}]
    add_peak_fractions(results, 10_000_000, PEAK, 1, vnni=True, bf16_per_lane=2)
    assert results[0]["peak_gflops"] == 2 * results[1]["peak_gflops"]
    unknown = [{**step, "precision": "bf16"}]
    add_peak_fractions(unknown, 10_000_000, PEAK, 1)  # AMX, or no bf16: not modelled
    assert unknown[0]["of_peak"] is None


def test_the_numpy_floor_runs_on_the_threads_asked(
    tiny_bundles: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="holds numpy's BLAS threads")
    from edgekit.bench import core
    from edgekit.bench.runner import Budget

    seen: list[list[int]] = []
    timed = core.run_rounds

    def spy(*args: object, **kwargs: object) -> object:
        blas = [
            i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"
        ]
        seen.append(blas)
        return timed(*args, **kwargs)

    monkeypatch.setattr(core, "run_rounds", spy)
    budget = Budget(warmup=1, iters=10, rounds=1)
    doc = core.run_bench(tiny_bundles["charlm"], ["ort-cpu"], [1], budget, threads=1,
                         cold_start=False)  # fmt: skip
    assert seen[0] and set(seen[0]) == {1}
    assert doc["backends"]["numpy-floor"]["threads"] == 1
