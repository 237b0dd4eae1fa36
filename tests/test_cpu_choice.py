"""`device="auto"` without a GPU: ONNX Runtime unless OpenVINO measured clearly faster on the
bundle's own unit of work, decided by a rule on a 95% interval, cached with its evidence beside the
bundle and measured again by `edgekit choose`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edgekit
from edgekit.bundle.directory import Bundle
from edgekit.cli import app
from edgekit.runtimes import choice

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason="openvino is not installed (pip install 'edgekit-ml[openvino]'; the dev extra has it)",
)


def _paired(low: float, high: float):
    return lambda *a, **k: {"ratio": (low + high) / 2, "ci95": [low, high], "rounds": 15,
                            "candidate_us": 1.0, "baseline_us": 1.0}  # fmt: skip


@pytest.mark.parametrize(
    ("low", "high", "chosen"),
    # (0.82, 0.88): faster within one run, but not by more than runs differ: the default stays
    [
        (0.5, 0.6, "openvino"),
        (0.82, 0.88, "ort-cpu"),
        (0.95, 1.02, "ort-cpu"),
        (1.1, 1.3, "ort-cpu"),
    ],
)
def test_openvino_only_where_clearly_faster(
    tiny_bundles: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    low: float,
    high: float,
    chosen: str,
) -> None:
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(choice, "paired_ratio", _paired(low, high))
    bundle = tiny_bundles["charlm"]
    assert choice.cpu_backend(bundle, Bundle.read(bundle).manifest, 1)["backend"] == chosen
    assert edgekit.load(bundle, device="auto", threads=1).backend.name == chosen


def test_the_decision_is_cached_with_its_evidence_and_choose_measures_again(
    tiny_bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    bundle = tiny_bundles["cnn"]
    manifest = Bundle.read(bundle).manifest
    first = choice.cpu_backend(bundle, manifest, 1)  # measured here, for real
    assert first["backend"] in ("ort-cpu", "openvino") and len(first["evidence"]["ci95"]) == 2
    (cached,) = (tmp_path / "cache").glob("*/cpu-backend.json")
    assert json.loads(cached.read_text())["choice"] == first

    def no_measuring(*args: object) -> None:
        raise AssertionError("a cached decision is not measured again")

    monkeypatch.setattr(choice, "_measure", no_measuring)
    assert choice.cpu_backend(bundle, manifest, 1) == first
    monkeypatch.undo()
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(choice, "paired_ratio", _paired(0.4, 0.5))
    result = CliRunner().invoke(app, ["choose", str(bundle), "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["backend"] == "openvino"
    assert json.loads(cached.read_text())["choice"]["backend"] == "openvino"
