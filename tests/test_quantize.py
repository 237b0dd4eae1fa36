"""edgekit quantize --int8: a variant kept only when it passes its gates against torch's records."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import edgekit
from edgekit.cli import app
from edgekit.exporters import quantize as q
from edgekit.manifest import read_manifest


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def lm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 x 64 LSTM language model trained briefly on real text, exported with golden records."""
    from edgekit.exporters import bundle_from_checkpoint
    from edgekit.training import TrainOptions, train

    root = tmp_path_factory.mktemp("q")
    opts = TrainOptions(
        model="charlm", cell="lstm", layers=1, hidden=64, epochs=1, max_chars=60_000
    )
    ckpt, _ = train(opts, root / "ckpt")
    return bundle_from_checkpoint(ckpt.path, root / "bundle", steps=100)[0]


def _copy(bundle: Path, tmp_path: Path) -> Path:
    shutil.copytree(bundle, tmp_path / "b")
    return tmp_path / "b"


def test_an_int8_variant_passes_its_gates_and_checks(lm_bundle: Path, tmp_path: Path) -> None:
    b = _copy(lm_bundle, tmp_path)
    result = invoke("quantize", b, "--int8")
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    (variant,) = read_manifest(b)["variants"]
    assert variant["precision"] == "int8" and variant["file"] in read_manifest(b)["files"]
    assert variant["gates"]["top1_agreement"] >= 0.99 and variant["bytes_ratio"] < 0.5
    assert variant["quantized_ops"].get("DynamicQuantizeLSTM") == 1
    assert variant["parent_sha256"] == read_manifest(b)["files"]["model.onnx"]["sha256"]
    check = invoke("check", b, "--precision", "int8")
    assert check.exit_code == 0, check.output
    g32, g8 = edgekit.load(b), edgekit.load(b, precision="int8")
    assert g8.manifest["graph"] == "model.int8.onnx" and g32.manifest["graph"] == "model.onnx"
    assert len(g8.generate("the ", 50, temperature=0)) == 50
    assert edgekit.load(b, precision="auto").manifest["graph"] == "model.int8.onnx"
    again = invoke("quantize", b, "--int8")
    assert again.exit_code == 2 and "already exists; pass --force" in again.output


def test_a_variant_that_misses_a_gate_is_refused_and_nothing_is_written(
    lm_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate is measured for real; here the bar is set above what any quantized graph reaches."""
    b = _copy(lm_bundle, tmp_path)
    monkeypatch.setattr(q, "MAX_PERPLEXITY_DELTA", -1.0)  # demand int8 beat fp32 by 100%
    result = invoke("quantize", b, "--int8")
    assert result.exit_code == 1 and "misses its gates; nothing written" in result.output
    assert sorted(p.name for p in b.iterdir()) == sorted(p.name for p in lm_bundle.iterdir())
    assert "variants" not in read_manifest(b)


def test_the_gates_catch_a_bad_recipe(lm_bundle: Path, tmp_path: Path) -> None:
    """Binary weights (sign x mean magnitude, a deliberately bad recipe) are refused."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(lm_bundle / "model.onnx"))
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.size > 16:
            binary = (np.sign(w) * np.abs(w).mean()).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(binary, init.name))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    gates = q.measure_gates(lm_bundle, read_manifest(lm_bundle), tmp_path / "bad.onnx")
    assert not gates["passed"] and abs(gates["perplexity_delta"]) > q.MAX_PERPLEXITY_DELTA


def test_only_recurrent_bundles_are_quantized(tiny_bundles: dict[str, Path]) -> None:
    result = invoke("quantize", tiny_bundles["lenet"], "--int8")
    assert (
        result.exit_code == 2
        and "int8 variants are built for recurrent generation bundles" in result.output
    )
    assert invoke("quantize", tiny_bundles["charlm"]).exit_code == 2
    missing = invoke("generate", tiny_bundles["charlm"], "--precision", "int8")
    assert missing.exit_code == 2 and "has no int8 variant (it has: fp32)" in missing.output
