"""GPU paths: logic that needs no GPU runs everywhere; the rest skips with the reason.

Marked tests need hardware: `gpu` (an NVIDIA GPU with onnxruntime-gpu / torch CUDA), `trt`
(TensorRT + cuda-python). On a CPU-only machine they skip and say which piece is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import edgekit
from edgekit.errors import InputError
from edgekit.exporters import bundle_from_checkpoint
from edgekit.exporters.tensorrt import profile_shapes
from edgekit.iospec import contract_for
from edgekit.runtimes.engine_format import (
    check_engine_compat,
    engine_filename,
    engine_tolerance,
    pick_engine,
    plan_buffers,
)
from edgekit.runtimes.onnxruntime import provider_list
from edgekit.runtimes.tensorrt import unavailable_reason

LM_META = {
    "model": "charlm",
    "task": "generate",
    "config": {"cell": "lstm", "layers": 2, "hidden": 256, "vocab_size": 100},
}
CNN_META = {"model": "cnn", "task": "classify", "config": {"image_size": 128, "num_classes": 2}}
RECORD = {
    "file": "engine.nvidia-h100-80gb-hbm3.trt10.13.0.plan",
    "gpu": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
    "tensorrt": "10.13.0",
    "fp16": False,
    "max_batch": 8,
    "max_seq": 64,
}


def _ort_has(provider: str) -> bool:
    import onnxruntime as ort

    return provider in ort.get_available_providers()


needs_cuda_ep = pytest.mark.skipif(
    not _ort_has("CUDAExecutionProvider"),
    reason="onnxruntime has no CUDAExecutionProvider (needs onnxruntime-gpu and a GPU)",
)
needs_trt = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None,
    reason="tensorrt is not installed (it needs an NVIDIA machine: pip install 'edgekit-ml[gpu]')",
)


# --- logic that needs no GPU ------------------------------------------------------------------------


def test_profile_shapes_cover_prefill_and_step() -> None:
    shapes = profile_shapes(contract_for(LM_META), max_batch=8, max_seq=512)
    assert shapes["tokens"] == ((1, 1), (1, 1), (8, 512))
    assert shapes["state_in.h"] == ((2, 1, 256), (2, 1, 256), (2, 8, 256))
    assert shapes["state_in.c"][2] == (2, 8, 256)
    cnn = profile_shapes(contract_for(CNN_META), max_batch=32, max_seq=1)
    assert cnn["image"] == ((1, 3, 128, 128), (1, 3, 128, 128), (32, 3, 128, 128))
    with pytest.raises(InputError, match="must be >= 1"):
        profile_shapes(contract_for(CNN_META), max_batch=0, max_seq=1)


def test_buffer_plan_is_sized_for_the_largest_shapes() -> None:
    plan = plan_buffers(contract_for(LM_META), max_batch=8, max_seq=512)
    assert plan["tokens"] == 8 * 512 * 8  # int64
    assert plan["logits"] == 8 * 512 * 100 * 4  # float32
    assert plan["state_in.h"] == plan["state_out.c"] == 2 * 8 * 256 * 4


def test_engine_file_names_carry_gpu_and_version() -> None:
    assert (
        engine_filename("NVIDIA H100 80GB HBM3", "10.13.0", False)
        == "engine.nvidia-h100-80gb-hbm3.trt10.13.0.plan"
    )
    assert engine_filename("NVIDIA H200", "10.13.0", True).endswith(".fp16.plan")


def test_engine_for_another_gpu_or_version_is_refused_with_the_fix() -> None:
    check_engine_compat(RECORD, "NVIDIA H100 80GB HBM3", "9.0", "10.13.0")
    with pytest.raises(
        InputError, match="built for NVIDIA H100 80GB HBM3 .* edgekit engine BUNDLE"
    ):
        check_engine_compat(RECORD, "NVIDIA A10G", "8.6", "10.13.0")
    with pytest.raises(
        InputError, match="with TensorRT 10.13.0; this machine has .* TensorRT 10.14.1"
    ):
        check_engine_compat(RECORD, "NVIDIA H100 80GB HBM3", "9.0", "10.14.1")
    assert (
        pick_engine({"engines": [RECORD]}, "NVIDIA H100 80GB HBM3", "9.0", "10.13.0")["file"]
        == RECORD["file"]
    )
    with pytest.raises(InputError, match="no TensorRT engine"):
        pick_engine({"engines": []}, "x", "9.0", "10")


def test_engine_tolerances_loosen_for_fp16_and_tf32() -> None:
    assert engine_tolerance({"fp16": True}, 1e-4, 1e-3) == (1e-2, 1e-2)
    assert engine_tolerance({"fp16": False}, 1e-4, 1e-3) == (1e-3, 1e-2)


def test_provider_options() -> None:
    assert provider_list("cpu") == ["CPUExecutionProvider"]
    cuda = provider_list("cuda", cuda_graph=True)
    assert cuda[0] == ("CUDAExecutionProvider", {"enable_cuda_graph": "1"})
    trt = provider_list("tensorrt", trt_cache_dir=Path("/b/.cache/trt"), trt_fp16=True)
    assert (
        trt[0][1]["trt_engine_cache_path"] == "/b/.cache/trt"
        and trt[0][1]["trt_fp16_enable"] == "1"
    )
    assert trt[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_trt_backend_reports_why_it_cannot_run(tmp_path: Path) -> None:
    reason = unavailable_reason(tmp_path, {"engines": []})
    assert reason is not None
    if importlib.util.find_spec("tensorrt") is None:
        assert "tensorrt is not installed" in reason
    else:
        assert "edgekit engine" in reason


@pytest.mark.skipif(_ort_has("CUDAExecutionProvider"), reason="this onnxruntime has CUDA")
def test_cuda_graph_needs_the_cuda_device(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    bundle, _ = bundle_from_checkpoint(tiny_checkpoints["charlm"], tmp_path / "b", steps=0)
    with pytest.raises(InputError, match="CUDAExecutionProvider"):
        edgekit.load(bundle, device="cuda", cuda_graph=True)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here"
)
def test_cli_tensorrt_without_tensorrt_fails_before_exporting(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    result = CliRunner().invoke(
        app, ["export", str(tiny_checkpoints["cnn"]), "--out", str(tmp_path / "b"), "--tensorrt"]
    )
    assert result.exit_code == 2 and "pip install 'edgekit-ml[gpu]'" in result.output
    assert not (tmp_path / "b").exists()
    engine = CliRunner().invoke(app, ["engine", str(tmp_path)])
    assert engine.exit_code == 2 and "not an edgekit bundle" in engine.output


# --- on a GPU ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import train_tiny

    root = tmp_path_factory.mktemp("gpu")
    ck = train_tiny("charlm", root / "ck", hidden=32, layers=2, max_chars=6000)
    return bundle_from_checkpoint(ck.path, root / "b", steps=10)[0]  # type: ignore[attr-defined]


@pytest.mark.gpu
@needs_cuda_ep
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_generator_matches_cpu(lm_bundle: Path, cuda_graph: bool) -> None:
    """State stays on the device (and the step replays a CUDA graph); greedy text equals the CPU's."""
    cpu = edgekit.load(lm_bundle).generate("the ", 200, temperature=0)
    gpu = edgekit.load(lm_bundle, device="cuda", cuda_graph=cuda_graph)
    assert gpu.device == "cuda"
    assert gpu.generate("the ", 200, temperature=0) == cpu
    session = gpu.session()
    session.feed("the ")
    values = session._stepper.buffers[session._stepper.current]
    assert all(v.device_name() == "cuda" for v in values.values())


@pytest.mark.gpu
@needs_cuda_ep
def test_cuda_bench_rows(lm_bundle: Path) -> None:
    from edgekit.bench.core import run_bench
    from edgekit.bench.runner import Budget

    doc = run_bench(
        lm_bundle,
        ["ort-cuda", "ort-cuda-graph", "torch-cuda", "torch-cuda-graph"],
        [1],
        Budget(warmup=5, iters=20, rounds=2),
        cold_start=False,
    )
    ran = {r["backend"] for r in doc["results"]}
    assert {"ort-cuda", "ort-cuda-graph"} <= ran


@pytest.mark.trt
@needs_trt
def test_engine_build_parity_and_step(lm_bundle: Path) -> None:
    from edgekit.exporters.tensorrt import build_engine_into_bundle
    from edgekit.iospec import IOContract
    from edgekit.manifest import read_manifest
    from edgekit.runtimes.tensorrt import TrtBackend

    record = build_engine_into_bundle(lm_bundle, fp16=False, max_batch=4, max_seq=64, force=True)
    assert record["parity"]["passed"]
    manifest = read_manifest(lm_bundle)
    backend = TrtBackend.from_bundle(lm_bundle, manifest)
    stepper = backend.stepper(1)
    cpu = edgekit.load(lm_bundle).session()
    vocab = manifest["vocab"]
    ids = np.array([[vocab.index(c) for c in "the "]])
    cpu.feed("the ")
    stepper.prefill(ids)
    contract = IOContract.from_manifest(manifest)
    assert contract.state
    for _ in range(50):
        token = int(stepper.logits[0, 0].argmax())
        assert vocab[token] == cpu.step(0)
        stepper.tokens[0, 0] = token
        stepper.step()
