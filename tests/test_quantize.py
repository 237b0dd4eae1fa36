"""edgekit quantize: int8 and fp16 variants, kept only when they pass their gates on held-out data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import edgekit
from edgekit.cli import app
from edgekit.errors import CheckFailed
from edgekit.exporters.quantize import Bars, gates, quantize_bundle, recipes
from edgekit.manifest import read_manifest
from edgekit.runtimes.loader import auto_precision


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def short_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Speed is recorded, never asserted here: a short timing window keeps the suite fast."""
    monkeypatch.setattr(gates, "SPEED_SECONDS", 0.2)


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


def _listing(bundle: Path) -> list[str]:
    return sorted(p.name for p in bundle.iterdir())


def test_an_lstm_gets_dynamic_int8_that_passes_its_gates(lm_bundle: Path, tmp_path: Path) -> None:
    b = _copy(lm_bundle, tmp_path)
    result = invoke("quantize", b, "--int8")
    assert result.exit_code == 0, result.output
    assert "gates: PASS" in result.output and "perplexity" in result.output
    manifest = read_manifest(b)
    (variant,) = manifest["variants"]
    assert variant["file"] == "model.int8.onnx" and variant["file"] in manifest["files"]
    assert variant["recipe"]["mode"] == "dynamic" and variant["recipe"]["per_channel"]
    assert variant["quantized_ops"].get("DynamicQuantizeLSTM") == 1
    assert variant["parent_sha256"] == manifest["files"]["model.onnx"]["sha256"]
    g = variant["gates"]
    assert g["passed"] and g["top1_agreement"] >= 0.99 and g["top1_agreement_text"] >= 0.99
    assert abs(g["perplexity_delta"]) <= 0.01 and g["held_out"].endswith("held-out characters")
    assert set(g["state_drift"]) == {"state_in.h", "state_in.c"}
    assert g["speed"]["fp32_us"] > 0 and g["speed"]["variant_us"] > 0
    assert variant["bytes_ratio"] < 0.5 and variant["case_atol"]
    assert invoke("check", b, "--precision", "int8").exit_code == 0
    g8 = edgekit.load(b, precision="int8")
    assert g8.manifest["graph"] == "model.int8.onnx"
    assert len(g8.generate("the ", 50, temperature=0)) == 50
    info = invoke("info", b)
    assert "variant int8 model.int8.onnx: dynamic per-channel" in info.output
    again = invoke("quantize", b, "--int8")
    assert again.exit_code == 2 and "already has an int8 variant; pass --replace" in again.output


def test_a_variant_that_misses_a_gate_is_refused_after_trying_nodes_in_float(
    lm_bundle: Path, tmp_path: Path
) -> None:
    """The gate is measured for real; the bar is set where no quantized graph can reach it."""
    b = _copy(lm_bundle, tmp_path)
    before = _listing(b)
    with pytest.raises(CheckFailed, match="misses its gates; nothing written") as err:
        quantize_bundle(b, "int8", bars=Bars(max_perplexity_delta=-1.0))
    assert "most sensitive node(s) in float first" in str(err.value)
    assert _listing(b) == before and "variants" not in read_manifest(b)


def test_calibrating_on_the_wrong_data_is_refused(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    """A deliberately bad recipe: static int8 calibrated on blank images clips every real one."""
    b = _copy(tiny_bundles["lenet"], tmp_path)
    blank = tmp_path / "blank.npz"
    np.savez(blank, image=np.zeros((32, 1, 28, 28), np.float32))
    result = invoke("quantize", b, "--int8", "--calibration", blank)
    assert result.exit_code == 1, result.output
    assert "held-out accuracy drops" in result.output and "nothing written" in result.output
    assert "model.int8.onnx" not in _listing(b) and "variants" not in read_manifest(b)
    kept = invoke("quantize", b, "--int8", "--calibration", blank, "--force")
    assert kept.exit_code == 0 and "gates: MISSED" in kept.output
    assert read_manifest(b)["variants"][0]["forced"] is True


def test_binary_weights_miss_the_language_model_gates(lm_bundle: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(lm_bundle / "model.onnx"))
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.size > 16:
            binary = (np.sign(w) * np.abs(w).mean()).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(binary, init.name))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    from edgekit.exporters.quantize.data import data_split_of

    manifest = read_manifest(lm_bundle)
    measured = gates.measure(lm_bundle, manifest, tmp_path / "bad.onnx", data_split_of(manifest)[0])
    assert not measured["passed"] and abs(measured["perplexity_delta"]) > 0.01
    assert any("perplexity" in f for f in measured["failures"])


def test_convolutions_get_static_int8_calibrated_on_the_training_split(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    b = _copy(tiny_bundles["cnn"], tmp_path)
    result = invoke("quantize", b, "--int8", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["recipe"]["mode"] == "static" and "QuantizeLinear" in record["quantized_ops"]
    assert record["calibration"].endswith("from the training split, MinMax")
    assert record["gates"]["passed"] and "accuracy_delta" in record["gates"]
    assert record["gates"]["top1_agreement_torch"] >= 0.75  # against torch's golden real images
    assert record["bytes_ratio"] < 0.3
    assert invoke("check", b, "--precision", "int8").exit_code == 0
    verdict = invoke("verify", b)
    assert (
        verdict.exit_code == 0
        and "variant int8 model.int8.onnx: golden replay ok" in verdict.output
    )


def test_tiny_linear_models_are_not_quantized(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    for model in ("linear", "logistic"):
        b = _copy(tiny_bundles[model], tmp_path / model)
        for flag in ("--int8", "--fp16"):
            result = invoke("quantize", b, flag)
            assert result.exit_code == 0 and "does not pay" in result.output
            assert "nothing written" in result.output
        assert "variants" not in read_manifest(b)


def test_a_gru_keeps_its_cell_in_float_and_steps_on_an_int8_step_graph(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sequence graph's GRU op stays float; the one-token graph's MatMuls go int8. Whether
    the latter steps faster is measured; here it is taken as so, to check the path itself."""
    import onnx

    from edgekit.exporters import bundle_from_checkpoint
    from edgekit.exporters.quantize import bundle as quantize_module
    from tests.conftest import train_tiny

    ckpt = train_tiny("charlm", tmp_path / "ckpt", cell="gru")
    bundle = bundle_from_checkpoint(ckpt.path, tmp_path / "gru", steps=5)[0]  # type: ignore[attr-defined]
    model = onnx.load(str(bundle / "model.onnx"))
    recipe = recipes.choose(model, "int8")
    left, share = recipes.float_share(model, recipe)
    assert recipe.mode == "dynamic" and left and all(op.startswith("GRU") for op in left)
    assert 0.5 < share < 1.0
    monkeypatch.setattr(quantize_module, "_steps_faster", lambda *args: True)
    record = quantize_bundle(bundle, "int8", force=True)  # kept even if it does not pay
    # int8 would reach only the sequence graph's head: prompts stay on the fp32 graph
    assert record["file"] == "model.onnx" and record["prompts"].startswith("fp32")
    assert record["quantized_ops"].get("MatMulInteger")  # the step graph's products
    assert record["step_file"] == "model.step.int8.onnx" and record["step_bytes_ratio"] < 0.6
    assert record["step_file"] in read_manifest(bundle)["files"]
    g8 = edgekit.load(bundle, precision="int8")
    assert g8.backend.step_session is not None
    assert len(g8.generate("ab", 20, temperature=0)) == 20
    check = invoke("check", bundle, "--precision", "int8")  # the rollout steps on the int8 graph
    assert check.exit_code == 0, check.output


def test_a_variant_neither_smaller_nor_faster_does_not_pay() -> None:
    from edgekit.exporters.quantize.bundle import _refuse_if_useless

    with pytest.raises(recipes.DoesNotPay, match="0.97x the fp32 size and 1.01x its latency"):
        _refuse_if_useless(0.97, 1.01, ["GRU g"], 0.96)
    _refuse_if_useless(0.27, 1.5, [], 0.0)  # smaller: worth a file
    _refuse_if_useless(0.97, 0.8, [], 0.0)  # faster: worth a file


def test_fp16_keeps_fp32_at_the_boundary_and_is_not_auto_on_a_cpu(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    b = _copy(tiny_bundles["charlm"], tmp_path)
    result = invoke("quantize", b, "--fp16")
    assert result.exit_code == 0, result.output
    assert "fp16 is for GPUs" in result.output
    (variant,) = read_manifest(b)["variants"]
    # the level that opened it in a subprocess (ORT 1.32 crashes on fp16 LSTMs with "all")
    assert variant["optimization"] in ("all", "basic")
    g16 = edgekit.load(b, precision="fp16")
    assert g16.manifest["optimization"] == variant["optimization"]
    assert len(g16.generate("a", 10, temperature=0)) == 10
    assert edgekit.load(b, precision="auto").manifest["graph"] == "model.onnx"
    assert invoke("check", b, "--precision", "fp16").exit_code == 0


def test_auto_takes_int8_on_a_cpu_only_when_it_measured_faster() -> None:
    def variant(ratio: float) -> dict:
        return {"gates": {"speed": {"ratio": ratio}}}

    assert auto_precision({"int8": variant(0.6)}, "cpu") == "int8"
    assert auto_precision({"int8": variant(2.3)}, "cpu") == "fp32"
    assert auto_precision({"int8": variant(0.6), "fp16": variant(1.9)}, "cuda") == "fp16"
    assert auto_precision({"int8": variant(0.6)}, "cuda") == "fp32"


def test_bench_shows_a_row_per_precision_with_its_quality(lm_bundle: Path, tmp_path: Path) -> None:
    from edgekit.bench.core import run_bench
    from edgekit.bench.runner import Budget

    b = _copy(lm_bundle, tmp_path)
    quantize_bundle(b, "int8")
    doc = run_bench(b, ["ort-cpu"], [1], Budget(warmup=2, iters=10, rounds=1), cold_start=False)
    rows = {(r["backend"], r["case"]): r for r in doc["results"]}
    int8 = rows[("ort-cpu int8", "step bound B=1")]
    assert int8["precision"] == "int8" and int8["quality"].startswith("perplexity ")
    assert rows[("ort-cpu", "step bound B=1")]["quality"] == ""
    only = run_bench(
        b,
        ["ort-cpu"],
        [1],
        Budget(warmup=1, iters=10, rounds=1),
        cold_start=False,
        precision="fp32",
    )
    assert {r["backend"] for r in only["results"]} == {"ort-cpu", "numpy-floor"}


def test_verify_flags_a_stale_variant(lm_bundle: Path, tmp_path: Path) -> None:
    b = _copy(lm_bundle, tmp_path)
    quantize_bundle(b, "int8")
    assert invoke("verify", b, "--steps", "5").exit_code == 0
    manifest_file = b / "edgekit.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["variants"][0]["parent_sha256"] = "0" * 64  # as if the fp32 graph had changed
    manifest_file.write_text(json.dumps(manifest))
    result = invoke("verify", b, "--steps", "5")
    assert result.exit_code == 1 and "STALE" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "say which variant to build"),
        (("--int8", "--fp16"), "say which variant to build"),
        (("--fp16", "--mode", "static"), "are int8 options"),
        (("--int8", "--mode", "weird"), "--mode must be one of dynamic, static"),
    ],
)
def test_bad_options_are_one_line(
    tiny_bundles: dict[str, Path], args: tuple[str, ...], message: str
) -> None:
    result = invoke("quantize", tiny_bundles["lenet"], *args)
    assert result.exit_code == 2 and message in result.output


def test_a_calibration_file_must_name_the_inputs(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, pixels=np.zeros((4, 1, 28, 28), np.float32))
    result = invoke("quantize", tiny_bundles["lenet"], "--int8", "--calibration", wrong)
    assert result.exit_code == 2 and "expected the inputs ['image']" in result.output
    missing = invoke("generate", tiny_bundles["charlm"], "--precision", "int8")
    assert missing.exit_code == 2 and "has no int8 variant (it has: fp32)" in missing.output


def test_your_own_module_is_quantized_too(tmp_path: Path) -> None:
    """No data description: a matmul net is gated on torch's golden cases, a conv net needs
    --calibration and is then gated on those rows (agreement with fp32)."""
    import torch

    from tests.user_modules import models as m

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 8)
    ).eval()
    axes = {"x": {0: "batch"}, "y": {0: "batch"}}
    b, _ = edgekit.export(
        mlp, torch.randn(4, 32), tmp_path / "mlp", input_names=["x"], output_names=["y"],
        dynamic_axes=axes, task="regress",
    )  # fmt: skip
    record = quantize_bundle(b, "int8", force=True)  # a tiny net may not pay: keep it anyway
    assert record["recipe"]["mode"] == "dynamic"
    assert record["gates"]["held_out"].startswith("torch's golden shape cases")
    assert record["gates"]["output_error"] < 0.02

    torch.manual_seed(10)
    vision_axes = {
        "image": {0: "batch"},
        "output.logits": {0: "batch"},
        "output.features": {0: "batch"},
    }
    v, _ = edgekit.export(
        m.VisionNet(), torch.randn(2, 3, 32, 32), tmp_path / "vision", input_names=["image"],
        dynamic_axes=vision_axes, task="classify", labels=[str(i) for i in range(10)],
    )  # fmt: skip
    without = invoke("quantize", v, "--int8")
    assert without.exit_code == 2 and "static int8 needs calibration data" in without.output
    cal = tmp_path / "cal.npz"
    np.savez(
        cal, image=np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    )
    bad = tmp_path / "bad.npz"
    np.savez(bad, image=np.zeros((4, 3, 16, 16), np.float32))
    wrong = invoke("quantize", v, "--int8", "--calibration", bad)
    assert (
        wrong.exit_code == 2 and "image is float32 [4, 3, 16, 16], expected float32" in wrong.output
    )
    result = invoke("quantize", v, "--int8", "--calibration", cal, "--force", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["recipe"]["mode"] == "static" and "rows of cal.npz" in record["gates"]["held_out"]
    assert record["calibration"] == f"64 rows from {cal}, MinMax"
