"""The CLI: thin commands, one-line errors with exit code 2, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekit.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    for f in fragments:
        assert f in lines[0], lines[0]


def test_train_and_info(tmp_path: Path) -> None:
    out = tmp_path / "lm"
    result = invoke(
        "train",
        "charlm",
        "--hidden",
        8,
        "--layers",
        1,
        "--max-chars",
        2000,
        "--seq-len",
        16,
        "--epochs",
        1,
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["checkpoint"] == str(out)
    assert payload["metrics"]["val_perplexity"] > 1
    shown = invoke("info", out)
    assert shown.exit_code == 0 and "charlm" in shown.output and "vocab" in shown.output
    as_json = json.loads(invoke("info", out, "--json").output)
    assert as_json["config"]["hidden"] == 8


def test_train_prints_metrics_and_checkpoint(tmp_path: Path) -> None:
    result = invoke("train", "linear", "--epochs", 50, "--out", tmp_path / "lin", "--quiet")
    assert result.exit_code == 0, result.output
    assert "mse" in result.output and f"checkpoint: {tmp_path / 'lin'}" in result.output


def test_unknown_model_lists_known_ones() -> None:
    assert_user_error(invoke("train", "resnet"), "unknown model 'resnet'", "linear", "charlm")


def test_unknown_cell() -> None:
    assert_user_error(invoke("train", "charlm", "--cell", "tcn"), "unknown --cell", "scratch-lstm")


@pytest.mark.parametrize(
    ("flag", "value"), [("--epochs", 0), ("--lr", -1), ("--batch-size", 0), ("--lr", 0)]
)
def test_non_positive_numbers(flag: str, value: int) -> None:
    assert_user_error(invoke("train", "linear", flag, value), flag, "positive")


def test_missing_data_path(tmp_path: Path) -> None:
    assert_user_error(invoke("train", "charlm", "--data", tmp_path / "nope.txt"), "not found")


def test_empty_data_file(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    assert_user_error(invoke("train", "charlm", "--data", tmp_path / "empty.txt"), "is empty")


def test_text_too_short_or_monotonous(tmp_path: Path) -> None:
    (tmp_path / "short.txt").write_text("hello world")
    assert_user_error(invoke("train", "charlm", "--data", tmp_path / "short.txt"), "needs at least")
    (tmp_path / "same.txt").write_text("a" * 5000)
    assert_user_error(
        invoke("train", "charlm", "--data", tmp_path / "same.txt"), "2 distinct characters"
    )


def test_class_folder_without_images(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "imgs" / "Cat").mkdir(parents=True)
    (tmp_path / "imgs" / "Dog").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "Cat" / "a.png")
    (tmp_path / "imgs" / "Dog" / "b.jpg").write_text("not an image")
    assert_user_error(invoke("train", "cnn", "--data", tmp_path / "imgs"), "no valid image")


def test_unwritable_out(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert_user_error(
        invoke("train", "linear", "--epochs", 5, "--out", tmp_path / "file" / "ck"),
        "cannot write to",
        "is a file, not a directory",
    )
    assert (tmp_path / "file").read_text() == "x"


def test_damaged_checkpoint(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    ck = tmp_path / "ck"
    shutil.copytree(tiny_checkpoints["linear"], ck)
    (ck / "weights.safetensors").write_bytes(b"")
    assert_user_error(invoke("info", ck), "truncated or were modified")
    assert_user_error(invoke("info", tmp_path / "none"), "checkpoint not found")


def test_cuda_missing_is_a_clear_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so --device cuda is valid here")
    assert_user_error(invoke("train", "linear", "--device", "cuda"), "no CUDA GPU")


# --- export and verify ------------------------------------------------------------------------------


def test_export_and_verify(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = invoke("export", tiny_checkpoints["charlm"], "--out", out, "--steps", 20)
    assert result.exit_code == 0, result.output
    assert "rollout 20 steps" in result.output and f"bundle: {out}" in result.output
    verified = invoke("verify", out, "--steps", 10)
    assert verified.exit_code == 0 and "verify: PASS" in verified.output
    report = json.loads(invoke("verify", out, "--steps", 5, "--json").output)
    assert report["passed"] is True
    assert_user_error(invoke("export", tiny_checkpoints["charlm"], "--out", out), "--force")


def test_export_frozen_axis_exits_1_with_the_table(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    from tests.conftest import train_tiny

    ck = train_tiny("charlm", tmp_path / "ck", cell="scratch-rnn")
    result = invoke("export", ck.path, "--out", tmp_path / "b", "--exporter", "dynamo")  # type: ignore[attr-defined]
    assert result.exit_code == 1
    assert "input tokens axis 1 (time) is frozen to 3" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "b").exists()


def test_export_bad_inputs(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    assert_user_error(
        invoke("export", tmp_path / "nope", "--out", tmp_path / "b"), "checkpoint not found"
    )
    assert_user_error(
        invoke("export", tiny_checkpoints["linear"], "--out", tmp_path / "b", "--opset", 2),
        "unsupported opset 2",
    )
    assert_user_error(invoke("verify", tmp_path), "not an edgekit bundle")


# --- classify, predict, generate ----------------------------------------------------------------------


@pytest.fixture
def cli_bundles(tiny_bundles: dict[str, Path]) -> dict[str, Path]:
    return tiny_bundles


def test_classify(cli_bundles: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    img = tmp_path / "a.jpg"
    Image.new("RGB", (60, 60), (200, 30, 30)).save(img)
    result = invoke("classify", cli_bundles["cnn"], img, "--top-k", 2, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload[0]["label"] in ("ellipse", "stripes") and len(payload[0]["top_k"]) == 2
    assert_user_error(
        invoke("classify", cli_bundles["cnn"], tmp_path / "nope.jpg"), "image not found"
    )
    (tmp_path / "bad.jpg").write_text("not an image")
    assert_user_error(
        invoke("classify", cli_bundles["cnn"], tmp_path / "bad.jpg"), "cannot read image"
    )
    assert_user_error(
        invoke("classify", cli_bundles["linear"], img), "classify needs an image classifier"
    )


def test_predict(cli_bundles: dict[str, Path], tmp_path: Path) -> None:
    result = invoke("predict", cli_bundles["linear"], "25,3", "30,2")
    assert result.exit_code == 0 and "25,3 ->" in result.output
    (tmp_path / "rows.csv").write_text("temperature\n-9\n9\n")
    out = json.loads(
        invoke("predict", cli_bundles["logistic"], "--csv", tmp_path / "rows.csv", "--json").output
    )
    assert [r["label"] for r in out] == ["stays in", "goes out"]
    assert_user_error(invoke("predict", cli_bundles["linear"], "25"), "expects 2")
    assert_user_error(invoke("predict", cli_bundles["linear"], "a,b"), "is not numbers")
    assert_user_error(invoke("predict", cli_bundles["linear"]), "no rows given")


def test_generate(cli_bundles: dict[str, Path]) -> None:
    args = [
        "generate",
        cli_bundles["charlm"],
        "--prompt",
        "the ",
        "--max-new-tokens",
        20,
        "--temperature",
        0,
    ]
    result = invoke(*args)
    assert result.exit_code == 0 and result.output.startswith("the ") and len(result.output) == 25
    streamed = invoke(*args, "--stream")
    assert streamed.output == result.output
    assert_user_error(
        invoke("generate", cli_bundles["charlm"], "--prompt", "€"), "not in the model's vocabulary"
    )
    assert_user_error(
        invoke("generate", cli_bundles["linear"]), "generate needs a generation bundle"
    )
    assert_user_error(
        invoke("generate", cli_bundles["charlm"], "--device", "cuda"), "CUDAExecutionProvider"
    )


def test_info_on_a_bundle(cli_bundles: dict[str, Path]) -> None:
    shown = invoke("info", cli_bundles["charlm"])
    assert shown.exit_code == 0, shown.output
    assert "state  state_in.h -> state_out.h" in shown.output and "parity passed" in shown.output
    assert json.loads(invoke("info", cli_bundles["charlm"], "--json").output)["task"] == "generate"


# --- review fixes: nothing destroyed, one line for every mistake ------------------------------------


def test_train_never_deletes_a_users_files(tmp_path: Path) -> None:
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "notes.txt").write_text("precious")
    (tmp_path / "tiny.txt").write_text("x")
    for target in ("mydata", "tiny.txt"):
        result = invoke("train", "linear", "--epochs", 5, "--quiet", "--out", tmp_path / target)
        assert_user_error(result, "is not an edgekit checkpoint", "--force")
    assert (tmp_path / "mydata" / "notes.txt").read_text() == "precious"
    assert (
        invoke("train", "linear", "--epochs", 5, "--quiet", "--out", tmp_path / "ck").exit_code == 0
    )
    assert (
        invoke("train", "linear", "--epochs", 5, "--quiet", "--out", tmp_path / "ck").exit_code == 0
    )
    forced = invoke(
        "train", "linear", "--epochs", 5, "--quiet", "--out", tmp_path / "tiny.txt", "--force"
    )
    assert forced.exit_code == 0 and (tmp_path / "tiny.txt" / "checkpoint.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "mydata", "tiny.txt"], (
        "no leftovers"
    )


def test_outputs_are_readable_by_others(tmp_path: Path) -> None:
    import os
    import stat

    invoke("train", "linear", "--epochs", 5, "--quiet", "--out", tmp_path / "ck")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "ck").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "ck" / "weights.safetensors").stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train"], "Missing argument 'model'"),
        (["train", "linear", "--epochs", "abc"], "--epochs"),
        (["bogus"], "No such command 'bogus'"),
        (["export", "x", "--exporter", "foo"], "--exporter"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], message: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr


def test_missing_torch_names_the_extra(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch': raise ModuleNotFoundError('blocked', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edgekit.cli import main\n"
        f"main(['train', 'linear', '--out', {str(tmp_path / 'ck')!r}])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert (
        out.stderr.strip()
        == "error: this command needs 'torch', which is not installed: pip install 'edgekit-ml[train]'"
    )


@pytest.mark.parametrize(
    ("shape_train", "labels", "message"),
    [
        ((4, 8, 8), [0, 1, 2, 3], "lenet takes 28x28 or 32x32"),
        ((4, 28, 28), [0, 1, -1, 3], ">= 0"),
        ((4, 28, 28), [0, 1, 2], "one label per image"),
        ((4, 28), [0, 1, 2, 3], "(N, H, W)"),
    ],
)
def test_bad_npz(tmp_path: Path, shape_train: tuple, labels: list, message: str) -> None:
    import numpy as np

    x = np.zeros(shape_train, np.uint8)
    np.savez(
        tmp_path / "d.npz", x_train=x, y_train=np.array(labels), x_test=x, y_test=np.array(labels)
    )
    assert_user_error(invoke("train", "lenet", "--data", tmp_path / "d.npz", "--quiet"), message)


def test_zero_nan_and_inf_are_refused(
    cli_bundles: dict[str, Path], tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    assert_user_error(invoke("train", "charlm", "--max-chars", 0), "--max-chars must be a positive")
    assert_user_error(invoke("train", "linear", "--lr", "inf"), "--lr must be a positive")
    assert_user_error(
        invoke("export", tiny_checkpoints["charlm"], "--out", tmp_path / "b", "--steps", 0),
        "--steps must be >= 1",
    )
    assert_user_error(invoke("verify", cli_bundles["charlm"], "--steps", 0), "--steps must be >= 1")
    assert_user_error(
        invoke("export", tiny_checkpoints["linear"], "--out", tmp_path / "b", "--rtol", "nan"),
        "tolerances must be positive finite",
    )
    assert_user_error(
        invoke(
            "export",
            tiny_checkpoints["linear"],
            "--out",
            tmp_path / "b",
            "--exporter",
            "torchscript",
            "--opset",
            21,
        ),
        "supported: torchscript 14..20",
    )
    assert_user_error(invoke("predict", cli_bundles["linear"], "nan,1"), "non-finite")
    assert_user_error(invoke("bench", cli_bundles["linear"], "--iters", 0), "at least 10 samples")
    assert_user_error(
        invoke("bench", cli_bundles["linear"], "--json", "/proc/r.json"), "cannot write in /proc"
    )
    assert not (tmp_path / "b").exists()


def test_auto_device_says_which(cli_bundles: dict[str, Path]) -> None:
    result = invoke("generate", cli_bundles["charlm"], "--max-new-tokens", 3, "--device", "auto")
    assert result.exit_code == 0 and "device: " in result.output and "(auto)" in result.output


def test_classify_a_directory(cli_bundles: dict[str, Path], tmp_path: Path) -> None:
    assert_user_error(invoke("classify", cli_bundles["cnn"], tmp_path), "is a directory")


def test_classify_reports_each_unreadable_file_and_classifies_the_rest(
    cli_bundles: dict[str, Path], tmp_path: Path
) -> None:
    from PIL import Image

    good = [tmp_path / "a.png", tmp_path / "b.png"]
    for i, path in enumerate(good):
        Image.new("RGB", (48, 48), (40 * i, 200, 30)).save(path)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    missing = tmp_path / "missing.png"
    result = invoke("classify", cli_bundles["cnn"], good[0], corrupt, missing, good[1], "--json")
    assert result.exit_code == 2
    assert [r["image"] for r in json.loads(result.stdout)] == [str(good[0]), str(good[1])]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in result.stderr
    assert errors[0].startswith(f"error: {corrupt}: cannot read image")
    assert errors[1] == f"error: image not found: {missing}"
    plain = invoke("classify", cli_bundles["cnn"], *good)
    assert plain.exit_code == 0 and plain.stdout.count(": ") == 2


def test_generate_prints_the_prompt_then_the_apis_continuation(
    cli_bundles: dict[str, Path],
) -> None:
    import edgekit

    continuation = edgekit.load(cli_bundles["charlm"]).generate("the ", 30, temperature=0)
    args = ["generate", cli_bundles["charlm"], "--max-new-tokens", 30, "--temperature", 0]
    assert invoke(*args).stdout == "the " + continuation + "\n"
    assert invoke(*args, "--stream").stdout == "the " + continuation + "\n"


def test_generated_folders_are_ignored_by_git() -> None:
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout: nothing to ignore files for")
    paths = ["runs/ckpt/lenet", "bundles/cnn/model.onnx", "dist/x.whl", "build/lib/x.py", ".venv/x"]
    ignored = subprocess.run(
        ["git", "-C", str(root), "check-ignore", *paths], capture_output=True, text=True
    ).stdout.split()
    assert ignored == paths
