"""Golden records in every bundle, replayed torch-free by `edgekit check` and `model.check()`."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import edgekit
from edgekit.cli import app
from edgekit.manifest import read_manifest, write_manifest


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_every_zoo_bundle_carries_golden_records_that_check_passes(
    tiny_bundles: dict[str, Path],
) -> None:
    for name, bundle in tiny_bundles.items():
        manifest = read_manifest(bundle)
        golden = manifest["golden"]
        assert golden["file"] in manifest["files"], name  # hashed like every other file
        assert golden["bytes"] < 300_000, (name, golden["bytes"])
        cases = {c["case"] for c in golden["cases"]}
        assert {c["case"] for c in manifest["parity"]["cases"]} >= {
            c for c in cases if "stored" not in c
        }
        result = invoke("check", bundle)
        assert result.exit_code == 0, result.output
        assert f"check: PASS ({bundle})" in result.output
    info = invoke("info", tiny_bundles["charlm"]).output
    assert "golden golden.npz: 4 cases, a 5-step greedy rollout" in info
    report = edgekit.load(tiny_bundles["charlm"]).check()
    assert report.passed and report.rollout is not None and report.rollout.steps == 5
    doc = json.loads(invoke("check", tiny_bundles["lenet"], "--json").stdout)
    assert doc["passed"] and doc["candidate"] == "ort-cpu"


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "b"
    shutil.copytree(bundle, target)
    return target


@pytest.mark.parametrize("victim", ["golden.npz", "model.onnx"])
def test_a_tampered_golden_file_or_graph_is_refused(
    tiny_bundles: dict[str, Path], tmp_path: Path, victim: str
) -> None:
    bundle = _copy(tiny_bundles["charlm"], tmp_path)
    data = bytearray((bundle / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / victim).write_bytes(bytes(data))
    result = invoke("check", bundle)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{victim}: sha256 does not match the manifest" in result.output


def test_check_catches_a_graph_that_no_longer_gives_the_recorded_answers(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Golden outputs changed and the manifest re-hashed (a consistent forgery, or a runtime that
    computes differently): the replay itself must fail, naming the cases."""
    bundle = _copy(tiny_bundles["lenet"], tmp_path)
    with np.load(bundle / "golden.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays = {k: v * 1.05 if "/out/" in k else v for k, v in arrays.items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    (bundle / "golden.npz").write_bytes(buffer.getvalue())
    write_manifest(bundle, read_manifest(bundle, verify=False))
    result = invoke("check", bundle)
    assert result.exit_code == 1
    assert "FAIL" in result.output and "check: FAIL" in result.output


def test_check_on_any_registered_backend(tiny_bundles: dict[str, Path]) -> None:
    assert invoke("check", tiny_bundles["charlm"], "--backend", "ort-cpu").exit_code == 0
    missing = invoke("check", tiny_bundles["charlm"], "--backend", "trt")
    assert missing.exit_code == 2 and "backend trt cannot run here" in missing.output
    unknown = invoke("check", tiny_bundles["charlm"], "--backend", "npu")
    assert unknown.exit_code == 2 and "known backends:" in unknown.output
