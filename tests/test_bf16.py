"""`edgekit quantize --bf16`: OpenVINO's bf16 arithmetic on the fp32 graph, gated like int8/fp16,
run on the openvino backend only, chosen by `precision="auto"` there where it measured faster."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edgekit
from edgekit.cli import app
from edgekit.errors import InputError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason="openvino is not installed (pip install 'edgekit-ml[openvino]'; the dev extra has it)",
)


def _has_bf16() -> bool:
    from edgekit.runtimes.openvino import cpu_bf16

    return cpu_bf16()


needs_bf16 = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or not _has_bf16(),
    reason="this CPU reports no bf16 arithmetic to OpenVINO (AVX512_BF16 or AMX)",
)


def _copy(tiny_bundles: dict[str, Path], name: str, tmp_path: Path) -> Path:
    copy = tmp_path / name
    shutil.copytree(tiny_bundles[name], copy)
    return copy


@needs_bf16
@pytest.mark.parametrize("name", ["cnn", "charlm"])
def test_a_bf16_variant_is_gated_and_runs_on_openvino(
    tiny_bundles: dict[str, Path], tmp_path: Path, name: str
) -> None:
    bundle = _copy(tiny_bundles, name, tmp_path)
    files = sorted(p.name for p in bundle.iterdir())
    result = CliRunner().invoke(app, ["quantize", str(bundle), "--bf16", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["runtime"] == "openvino" and record["file"] == "model.onnx"
    assert record["gates"]["passed"] and record["gates"]["speed"]["variant_us"] > 0
    assert sorted(p.name for p in bundle.iterdir()) == files  # no file of its own
    model = edgekit.load(bundle, device="openvino", precision="bf16")
    assert model.backend.precision == "bf16"
    assert model.check().passed
    with pytest.raises(InputError, match="the bf16 variant runs on OpenVINO"):
        edgekit.load(bundle, precision="bf16")
    from edgekit.exporters.verify import verify_variants

    (verdict,) = verify_variants(bundle)
    assert verdict.passed, verdict.summary()
    ratio = record["gates"]["speed"]["ratio"]
    auto = edgekit.load(bundle, device="openvino", precision="auto").backend.precision
    assert auto == ("bf16" if ratio < 1 else "fp32")


@needs_bf16
def test_bench_runs_bf16_on_openvino_and_skips_it_elsewhere(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    from edgekit.bench.core import run_bench
    from edgekit.bench.runner import Budget
    from edgekit.exporters.quantize import quantize_bundle

    bundle = _copy(tiny_bundles, "cnn", tmp_path)
    quantize_bundle(bundle, "bf16")
    budget = Budget(warmup=2, iters=10, rounds=1)
    doc = run_bench(bundle, ["ort-cpu", "openvino"], [1], budget, cold_start=False)
    assert doc["backends"]["ort-cpu bf16"] == {
        "status": "skipped",
        "reason": "bf16 runs on openvino only",
    }
    assert any(r["backend"] == "openvino bf16" for r in doc["results"])


def test_a_cpu_without_bf16_is_refused_in_one_line(
    tiny_bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekit.runtimes import openvino

    monkeypatch.setattr(openvino, "cpu_bf16", lambda: False)  # as on a CPU without AVX512_BF16
    bundle = _copy(tiny_bundles, "cnn", tmp_path)
    result = CliRunner().invoke(app, ["quantize", str(bundle), "--bf16"])
    assert result.exit_code == 2
    assert "no bf16 arithmetic" in result.output and "Traceback" not in result.output
    both = CliRunner().invoke(app, ["quantize", str(bundle), "--bf16", "--int8"])
    assert both.exit_code == 2 and "one of them" in both.output
