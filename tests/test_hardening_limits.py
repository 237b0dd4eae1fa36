"""Hostile values at the edges of the CLI and the server: numbers finite in Python but not in the
model's float32, NaN and infinities in JSON, a subnormal temperature, infinite server options, and
Triton repository names that would leave their folder or that Triton cannot parse."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekit.cli import app
from edgekit.errors import InputError

runner = CliRunner()


def test_predict_refuses_a_value_that_overflows_float32(tiny_bundles: dict[str, Path]) -> None:
    result = runner.invoke(app, ["predict", str(tiny_bundles["linear"]), "1e39,3"])
    assert result.exit_code == 2 and "non-finite value in float32" in result.output
    assert "inf" not in result.output.split("(")[0] and "Traceback" not in result.output


@pytest.mark.parametrize("temperature", [1e-320, 5e-324, 1e-300, 1e-12])
def test_a_tiny_temperature_samples_the_top_token_not_nan(temperature: float) -> None:
    from edgekit.runtimes.sampling import sample

    logits = np.array([[0.5, 3.0, -1.0, 2.999], [7.0, -2.0, 1.0, 0.0]], np.float32)
    rng = np.random.default_rng(0)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # none escapes sample()
        picks = [sample(logits, temperature, None, None, rng).tolist() for _ in range(20)]
    assert all(p == [1, 0] for p in picks)


def test_a_tiny_temperature_generates_greedy_text(tiny_bundles: dict[str, Path]) -> None:
    import edgekit

    g = edgekit.load(tiny_bundles["charlm"])
    assert g.generate("the ", 30, temperature=1e-320, seed=0) == g.generate(
        "the ", 30, temperature=0
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("max_wait_ms", math.inf, "--max-wait-ms"), ("max_wait_ms", math.nan, "--max-wait-ms"),
     ("sequence_timeout_s", math.inf, "--sequence-timeout"),
     ("sequence_timeout_s", math.nan, "--sequence-timeout"), ("max_batch", 10**12, "--max-batch"),
     ("max_sequences", 10**12, "--max-sequences"),
     ("header_timeout_s", math.nan, "--header-timeout"), ("header_timeout_s", 0, "--header-timeout"),
     ("max_connections", 0, "--max-connections")],
)  # fmt: skip
def test_infinite_or_huge_server_options_are_refused(option: str, value: float, message: str):
    from edgekit.serve.models import ServeOptions

    with pytest.raises(InputError, match=message):
        ServeOptions(**{option: value}).check()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "flag", ["--max-wait-ms=inf", "--sequence-timeout=inf", "--header-timeout=inf"]
)
def test_the_serve_command_refuses_infinite_options_in_one_line(
    tiny_bundles: dict[str, Path], flag: str
) -> None:
    if importlib.util.find_spec("starlette") is None:
        pytest.skip("needs the serve extra (starlette, uvicorn)")
    result = runner.invoke(app, ["serve", str(tiny_bundles["cnn"]), flag, "--port", "1"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_json_numbers_that_are_nan_or_beyond_the_dtype_are_400s() -> None:
    from edgekit.serve.protocol import parse_request

    def body(data: object) -> bytes:
        tensor = {"name": "x", "datatype": "FP32", "shape": [2], "data": data}
        return json.dumps({"inputs": [tensor]}).encode()

    with pytest.raises(InputError, match="NaN, which is not a JSON number"):
        parse_request(b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], '
                      b'"data": [NaN]}]}', None)  # fmt: skip
    with pytest.raises(InputError, match="Infinity, which is not a JSON number"):
        parse_request(b'{"inputs": [], "x": -Infinity}', None)
    with pytest.raises(InputError, match="'x': FP32 values must be finite"):
        parse_request(body([1.0, 1e39]), None)
    # binary values are already in their dtype and taken as sent, as Triton takes them
    blob = np.array([1.0, np.nan], np.float32).tobytes()
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2],
                                   "parameters": {"binary_data_size": 8}}]}).encode()  # fmt: skip
    assert np.isnan(parse_request(head + blob, str(len(head))).inputs["x"][1])
    assert parse_request(body([1.0, -2.5]), None).inputs["x"].tolist() == [1.0, -2.5]


def test_responses_are_valid_json_even_when_an_output_is_not_finite() -> None:
    from edgekit.serve.protocol import InferRequest, encode_response

    out = {"y": np.array([1.0, np.nan, np.inf, -np.inf], np.float32)}
    text, headers = encode_response("m", InferRequest({}), out)
    assert not headers
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the response"))
    assert doc["outputs"][0]["data"] == [1.0, "NaN", "Infinity", "-Infinity"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--name", ".."], "model name '..'"), (["--name", "."], "model name '.'"),
     (["--name", 'a"b'], "model name"), (["--name", "a/b"], "model name"),
     (["--max-batch", str(2**31)], "--max-batch must be 1 .. 2147483647")],
)  # fmt: skip
def test_triton_refuses_names_and_sizes_triton_cannot_take(
    tiny_bundles: dict[str, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "repo" / "inner"
    result = runner.invoke(app, ["triton", str(tiny_bundles["cnn"]), "--out", str(out), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "repo").exists()  # nothing written, not even beside --out


def test_triton_force_onto_a_symlink_refuses_instead_of_replacing_the_link(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "keep.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    result = runner.invoke(app, ["triton", str(tiny_bundles["cnn"]), "--out", str(link), "--force"])
    assert result.exit_code == 2 and "symbolic link" in result.output
    assert link.is_symlink() and (real / "keep.txt").read_text() == "mine"


def _calibration(tmp_path: Path, image: np.ndarray) -> Path:
    path = tmp_path / "cal.npz"
    np.savez(path, image=image)
    return path


def test_calibration_with_nan_is_refused_before_any_variant_is_made(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    image = np.zeros((4, 1, 28, 28), np.float32)
    image[1, 0, 3, 3] = np.nan
    result = runner.invoke(
        app, ["quantize", str(tiny_bundles["lenet"]), "--int8", "--calibration",
              str(_calibration(tmp_path, image))],
    )  # fmt: skip
    assert result.exit_code == 2 and "NaN or infinite values" in result.output, result.output


def test_calibration_is_sized_from_its_headers_before_its_data_is_read(
    tiny_bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekit.bundle import Bundle
    from edgekit.exporters.quantize import data

    monkeypatch.setattr(data, "MAX_CALIBRATION_BYTES", 10_000)
    path = _calibration(tmp_path, np.zeros((4, 1, 28, 28), np.float32))  # 12544 bytes
    read = []
    monkeypatch.setattr(np, "load", lambda *a, **k: read.append(a) or pytest.fail("data read"))
    contract = Bundle.read(tiny_bundles["lenet"]).manifest.contract
    with pytest.raises(InputError, match="12544 bytes, more than 10000"):
        data.read_calibration(path, contract)
    assert not read
    (tmp_path / "not.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        data.read_calibration(tmp_path / "not.npz", contract)


def _dead_pid() -> int:
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_reader_finishes_a_swap_a_dead_writer_left_half_done(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Killed between `b -> .b.old-PID` and `.b.tmp-PID-x -> b`: the complete new bundle takes
    its place, the old one goes."""
    import shutil

    from edgekit.bundle import Bundle

    pid = _dead_pid()
    shutil.copytree(tiny_bundles["linear"], tmp_path / f".b.old-{pid}")
    shutil.copytree(tiny_bundles["cnn"], tmp_path / f".b.tmp-{pid}-x1")
    assert Bundle.read(tmp_path / "b").manifest.model == "cnn"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_writer_restores_the_old_content_when_the_new_is_gone(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    from edgekit.files import atomic_directory

    pid = _dead_pid()
    shutil.copytree(tiny_bundles["linear"], tmp_path / f".b.old-{pid}")
    # restored first, so it is not replaced without --force
    with pytest.raises(InputError, match="already exists"), atomic_directory(tmp_path / "b"):
        pass
    assert (tmp_path / "b" / "edgekit.json").is_file()
    assert not list(tmp_path.glob(".b.old-*"))


def test_a_live_writers_swap_is_left_alone(tiny_bundles: dict[str, Path], tmp_path: Path) -> None:
    import os
    import shutil

    from edgekit.files import finish_interrupted_swap

    shutil.copytree(tiny_bundles["linear"], tmp_path / f".b.old-{os.getpid()}")
    finish_interrupted_swap(tmp_path / "b")
    assert not (tmp_path / "b").exists() and (tmp_path / f".b.old-{os.getpid()}").is_dir()
