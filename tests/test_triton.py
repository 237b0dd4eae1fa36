"""`edgekit triton`: model repositories checked with Triton's own config schema and against the graph.

No Triton server runs on the test machines; the same `tritonclient` tests in test_serve.py can be
pointed at one serving this repository.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgekit.cli import app

runner = CliRunner()
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tritonclient") is None,
    reason="Triton's config schema ships in tritonclient (in the dev extra)",
)
ONNX_TYPES = {1: "TYPE_FP32", 7: "TYPE_INT64", 10: "TYPE_FP16", 6: "TYPE_INT32"}


def triton_schema() -> Any:
    """tritonclient's generated model_config_pb2, loaded alone (its package wants grpc)."""
    import tritonclient

    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_config(folder: Path) -> Any:
    from google.protobuf import text_format

    return text_format.Parse((folder / "config.pbtxt").read_text(), triton_schema().ModelConfig())


def graph_tensors(model: Path) -> dict[str, tuple[str, list[Any]]]:
    import onnx

    graph = onnx.load(str(model)).graph
    out = {}
    for v in [*graph.input, *graph.output]:
        dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        out[v.name] = (ONNX_TYPES[v.type.tensor_type.elem_type], dims)
    return out


def assert_matches_graph(config: Any, graph: dict[str, tuple[str, list[Any]]]) -> None:
    """Every config tensor is a graph tensor of the same type and shape (a symbolic dim is -1, or
    1 for a sequence's batch; with max_batch_size > 0 the graph has a leading batch dim)."""
    listed = [*config.input, *config.output]
    for t in listed:
        dtype, dims = graph[t.name]
        assert t.data_type == triton_schema().DataType.Value(dtype), t.name
        if config.max_batch_size > 0:
            assert isinstance(dims[0], str), f"{t.name}: batch must lead"
            dims = dims[1:]
        assert len(dims) == len(t.dims), t.name
        for want, got in zip(dims, t.dims, strict=True):
            assert got == want if isinstance(want, int) else got in (-1, 1), (t.name, dims, t.dims)
    states = config.sequence_batching.state
    named = (
        {t.name for t in listed} | {s.input_name for s in states} | {s.output_name for s in states}
    )
    assert named == set(graph), "config and graph name the same tensors"
    for s in states:
        assert s.initial_state[0].zero_data and list(s.dims) == list(s.initial_state[0].dims)
        assert graph[s.input_name][1][1] == "batch" and s.dims[1] == 1


@pytest.mark.parametrize("name", ["cnn", "linear", "rowlstm", "charlm"])
def test_repository_config_is_valid_and_matches_the_graph(
    tiny_bundles: dict[str, Path], tmp_path: Path, name: str
) -> None:
    repo = tmp_path / "repo"
    result = runner.invoke(
        app, ["triton", str(tiny_bundles[name]), "--out", str(repo), "--max-batch", "16"]
    )
    assert result.exit_code == 0, result.output
    folder = repo / tiny_bundles[name].name
    config = parse_config(folder)
    assert config.name == folder.name and config.platform == "onnxruntime_onnx"
    assert (folder / "1" / "model.onnx").read_bytes() == (
        tiny_bundles[name] / "model.onnx"
    ).read_bytes()
    assert_matches_graph(config, graph_tensors(folder / "1" / "model.onnx"))
    if name == "charlm":
        assert config.max_batch_size == 0 and len(config.sequence_batching.state) == 2
        assert [t.name for t in config.input] == ["tokens"]
    else:
        assert config.max_batch_size == 16 and config.HasField("dynamic_batching")


def test_repository_write_is_atomic_and_refuses_to_overwrite(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    args = ["triton", str(tiny_bundles["cnn"]), "--out", str(repo)]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert (
        again.exit_code == 2
        and "already exists" in again.output
        and "Traceback" not in again.output
    )
    assert runner.invoke(app, [*args, "--force", "--name", "catdog"]).exit_code == 0
    assert [p.name for p in repo.iterdir()] == ["catdog"]
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundles["cnn"], broken)
    (broken / "model.onnx").write_bytes(b"tampered")
    bad = runner.invoke(app, ["triton", str(broken), "--out", str(tmp_path / "r2")])
    assert bad.exit_code == 2 and not (tmp_path / "r2").exists()


def test_a_bundle_with_engines_also_gets_a_tensorrt_plan_model(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    """The engines' bytes are copied as they are (no TensorRT here to build a real one), one per
    compute capability, and the config names each through cc_model_filenames."""
    from edgekit.manifest import read_manifest, write_manifest

    bundle = tmp_path / "cnn"
    shutil.copytree(tiny_bundles["cnn"], bundle)
    manifest = read_manifest(bundle)
    engines = []
    for cc in ("8.0", "9.0"):
        name = f"engine.sm{cc}.plan"
        (bundle / name).write_bytes(f"plan for sm {cc}".encode())
        engines.append(
            {
                "file": name,
                "gpu": "GPU",
                "compute_capability": cc,
                "tensorrt": "10.0",
                "fp16": False,
            }
        )
    manifest["engines"] = engines
    write_manifest(bundle, manifest)
    result = runner.invoke(app, ["triton", str(bundle), "--out", str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "repo" / "cnn_trt"
    config = parse_config(folder)
    assert config.platform == "tensorrt_plan" and dict(config.cc_model_filenames) == {
        "8.0": "model.sm8.0.plan",
        "9.0": "model.sm9.0.plan",
    }
    assert (folder / "1" / "model.sm9.0.plan").read_bytes() == b"plan for sm 9.0"
    assert_matches_graph(config, graph_tensors(tmp_path / "repo" / "cnn" / "1" / "model.onnx"))
