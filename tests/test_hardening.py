"""A catalogue of bad inputs and faults, CLI and API: each gets one `error:` line naming the problem,
the right exit code, no traceback, and nothing lost or half-written."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgekit.cli import app
from edgekit.manifest import read_manifest, write_manifest

Setup = Callable[[dict[str, Path], Path], list[Any]]


def run(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def bundle_copy(bundles: dict[str, Path], tmp: Path, name: str = "charlm") -> Path:
    target = tmp / f"copy-{name}"
    if not target.exists():
        shutil.copytree(bundles[name], target)
    return target


def edit_manifest(change: Callable[[dict], None], name: str = "charlm") -> Setup:
    """A copy of a tiny bundle whose edgekit.json was edited by hand (files keep their hashes)."""

    def setup(bundles: dict[str, Path], tmp: Path) -> list[Any]:
        b = bundle_copy(bundles, tmp, name)
        doc = json.loads((b / "edgekit.json").read_text())
        change(doc)
        (b / "edgekit.json").write_text(json.dumps(doc))
        return ["check", b]

    return setup


def raw_manifest(text: str) -> Setup:
    def setup(bundles: dict[str, Path], tmp: Path) -> list[Any]:
        b = bundle_copy(bundles, tmp)
        (b / "edgekit.json").write_text(text)
        return ["check", b]

    return setup


def rehashed(change: Callable[[Path, dict[str, Path]], None], name: str = "charlm") -> Setup:
    """A copy whose files were changed and whose manifest was re-hashed to match (a consistent fake)."""

    def setup(bundles: dict[str, Path], tmp: Path) -> list[Any]:
        b = bundle_copy(bundles, tmp, name)
        change(b, bundles)
        write_manifest(b, json.loads((b / "edgekit.json").read_text()))
        return ["check", b]

    return setup


def cli(*args: Any, bundle: str | None = None, ckpt: str | None = None) -> Setup:
    def setup(bundles: dict[str, Path], tmp: Path) -> list[Any]:
        head = [bundles[bundle]] if bundle else [tmp.parent / "ckpts" / ckpt] if ckpt else []
        return [args[0], *head, *args[1:]]

    return setup


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        *keys, last = path.split(".")
        target = doc
        for k in keys:
            target = target[int(k)] if isinstance(target, list) else target[k]
        if isinstance(target, list):
            target[int(last)] = value
        elif value is KeyError:
            del target[last]
        else:
            target[last] = value

    return change


def _symlinked_graph(b: Path, bundles: dict[str, Path]) -> None:
    outside = b.parent / "outside.onnx"
    shutil.copy(b / "model.onnx", outside)
    (b / "model.onnx").unlink()
    (b / "model.onnx").symlink_to(outside)


def _other_graph(b: Path, bundles: dict[str, Path]) -> None:
    shutil.copy(bundles["lenet"] / "model.onnx", b / "model.onnx")


def _garbage_graph(b: Path, bundles: dict[str, Path]) -> None:
    (b / "model.onnx").write_bytes(b"\x08\x07 this is not a protobuf" * 10)


def _truncate_graph(bundles: dict[str, Path], tmp: Path) -> list[Any]:
    b = bundle_copy(bundles, tmp)
    data = (b / "model.onnx").read_bytes()
    (b / "model.onnx").write_bytes(data[: len(data) // 2])
    return ["check", b]


def _binary_csv(bundles: dict[str, Path], tmp: Path) -> list[Any]:
    (tmp / "rows.csv").write_bytes(bytes(range(256)) * 8)
    return ["predict", bundles["linear"], "--csv", tmp / "rows.csv"]


def _bomb(bundles: dict[str, Path], tmp: Path) -> list[Any]:
    from PIL import Image

    Image.new("1", (15_000, 15_000)).save(tmp / "bomb.png")  # 225M pixels in a few KB
    return ["classify", bundles["cnn"], tmp / "bomb.png"]


def _out_is_source(bundles: dict[str, Path], tmp: Path) -> list[Any]:
    ck = tmp / "ck"
    return ["export", ck, "--out", ck, "--force"]


def _out_inside_source(bundles: dict[str, Path], tmp: Path) -> list[Any]:
    ck = tmp / "ck"
    return ["export", ck, "--out", ck / "bundle", "--force"]


def _out_contains_source(bundles: dict[str, Path], tmp: Path) -> list[Any]:
    shutil.copytree(tmp / "ck", tmp / "inner" / "ck")
    return ["export", tmp / "inner" / "ck", "--out", tmp / "inner", "--force"]


def _out_is_cwd(bundles: dict[str, Path], tmp: Path) -> list[Any]:
    os.chdir(tmp)
    return ["export", tmp / "ck", "--out", ".", "--force"]


def _out_exists(bundles: dict[str, Path], tmp: Path) -> list[Any]:
    (tmp / "taken").mkdir()
    (tmp / "taken" / "keep.txt").write_text("mine")
    return ["export", tmp / "ck", "--out", tmp / "taken"]


LOCKS: list[Any] = []


def _out_locked(bundles: dict[str, Path], tmp: Path) -> list[Any]:
    lock = open(tmp / ".busy.lock", "w")  # noqa: SIM115  (another writer holds it)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    LOCKS.append(lock)
    return ["export", tmp / "ck", "--out", tmp / "busy"]


def _no_golden(bundles: dict[str, Path], tmp: Path) -> list[Any]:
    b = bundle_copy(bundles, tmp, "linear")
    doc = read_manifest(b)
    del doc["golden"]
    (b / "golden.npz").unlink()
    write_manifest(b, doc)
    return ["check", b]


VARIANT = {"precision": "int8", "file": "model.onnx", "tolerance": {"atol": 0.05, "rtol": 0.05}}
CATALOGUE: list[tuple[str, Setup, int, str]] = [
    # --- the manifest decides what runs: nothing in it is trusted -------------------------------
    (
        "graph absolute",
        edit_manifest(_set("graph", "/etc/passwd")),
        2,
        "graph '/etc/passwd' is not a plain file name",
    ),
    (
        "graph escapes",
        edit_manifest(_set("graph", "../x/model.onnx")),
        2,
        "is not a plain file name inside the bundle",
    ),
    (
        "graph unlisted",
        edit_manifest(_set("graph", "other.onnx")),
        2,
        "graph 'other.onnx' is not listed (and hashed) in files",
    ),
    (
        "files emptied",
        edit_manifest(_set("files", {})),
        2,
        "graph 'model.onnx' is not listed (and hashed) in files",
    ),
    (
        "files escape",
        edit_manifest(lambda d: d["files"].update({"../evil": {"sha256": "0", "bytes": 1}})),
        2,
        "files lists '../evil'",
    ),
    (
        "golden escapes",
        edit_manifest(_set("golden.file", "../../etc/passwd")),
        2,
        "golden.file '../../etc/passwd' is not a plain file name",
    ),
    (
        "engine absolute",
        edit_manifest(_set("engines", [{"file": "/tmp/x.plan"}])),
        2,
        "engines[0].file '/tmp/x.plan'",
    ),
    ("missing inputs", edit_manifest(_set("inputs", KeyError)), 2, "missing key 'inputs'"),
    ("missing files", edit_manifest(_set("files", KeyError)), 2, "missing key 'files'"),
    ("inputs not list", edit_manifest(_set("inputs", "tokens")), 2, "inputs must be list, got str"),
    ("unknown task", edit_manifest(_set("task", "dance")), 2, "task 'dance' is not one of"),
    (
        "odd dtype",
        edit_manifest(_set("inputs.0.dtype", "complex128")),
        2,
        "dtype 'complex128' is not one of",
    ),
    (
        "negative dim",
        edit_manifest(_set("outputs.0.shape", ["batch", -1])),
        2,
        "dims are names or sizes >= 0",
    ),
    (
        "state half",
        edit_manifest(_set("state.0.output", None)),
        2,
        "state[0] must name an input and an output",
    ),
    (
        "atol text",
        edit_manifest(_set("tolerance.atol", "x")),
        2,
        "tolerance.atol must be a finite number",
    ),
    (
        "step graph escapes",
        edit_manifest(_set("step_graph", {"used": True, "file": "../model.onnx"})),
        2,
        "step_graph.file '../model.onnx' is not a plain file name inside the bundle",
    ),
    (
        "step graph unlisted",
        edit_manifest(_set("step_graph", {"used": True, "file": "step.onnx"})),
        2,
        "step_graph.file 'step.onnx' is not listed (and hashed) in files",
    ),
    # a reduced-precision variant's record decides which graph and which bounds are used
    (
        "variant precision",
        edit_manifest(_set("variants", [{**VARIANT, "precision": "int4"}])),
        2,
        "variants[0].precision must be one of int8, fp16",
    ),
    (
        "variant step file escapes",
        edit_manifest(_set("variants", [{**VARIANT, "step_file": "/tmp/x.onnx"}])),
        2,
        "variants[0].step_file '/tmp/x.onnx' is not a plain file name inside the bundle",
    ),
    (
        "variant optimization",
        edit_manifest(_set("variants", [{**VARIANT, "optimization": "turbo"}])),
        2,
        "variants[0].optimization must be one of all, extended, basic, disabled",
    ),
    (
        "variant bounds",
        edit_manifest(_set("variants", [{**VARIANT, "case_atol": {"case": "wide"}}])),
        2,
        "variants[0].case_atol must map case names to finite numbers",
    ),
    (
        "variant speed",
        edit_manifest(_set("variants", [{**VARIANT, "gates": {"speed": {"ratio": -1}}}])),
        2,
        "variants[0].gates.speed.ratio must be a finite number",
    ),
    (
        "variant tolerance",
        edit_manifest(_set("variants", [{**VARIANT, "tolerance": "loose"}])),
        2,
        "variants[0].tolerance must be an object",
    ),
    (
        "version string",
        edit_manifest(_set("schema_version", "1")),
        2,
        "schema_version must be a positive integer, got '1'",
    ),
    (
        "version newer",
        edit_manifest(_set("schema_version", 99)),
        2,
        "version 99 is newer than this edgekit reads",
    ),
    (
        "other schema",
        edit_manifest(_set("schema", "someone.else")),
        2,
        "not an edgekit bundle manifest",
    ),
    ("manifest not json", raw_manifest("{not json"), 2, "corrupt bundle manifest"),
    ("manifest a list", raw_manifest("[1, 2]"), 2, "not an edgekit bundle manifest"),
    (
        "several problems at once",
        edit_manifest(lambda d: d.update(task=3, graph="/x")),
        2,
        "task must be str, got int; graph '/x'",
    ),
    (
        "renamed input",
        edit_manifest(_set("inputs.0.name", "ids")),
        2,
        "does not match its manifest",
    ),
    ("symlinked graph", rehashed(_symlinked_graph), 2, "is a symbolic link"),
    ("another model's graph", rehashed(_other_graph), 2, "does not match its manifest"),
    ("garbage graph", rehashed(_garbage_graph), 2, "ONNX Runtime cannot load"),
    ("truncated graph", _truncate_graph, 2, "model.onnx: sha256 does not match the manifest"),
    ("no golden records", _no_golden, 2, "has no golden records"),
    # --- generation options ----------------------------------------------------------------------
    (
        "temperature nan",
        cli("generate", "--temperature", "nan", bundle="charlm"),
        2,
        "temperature must be >= 0 and finite",
    ),
    (
        "temperature inf",
        cli("generate", "--temperature", "inf", bundle="charlm"),
        2,
        "temperature must be >= 0 and finite",
    ),
    (
        "temperature negative",
        cli("generate", "--temperature", "-1", bundle="charlm"),
        2,
        "temperature must be >= 0",
    ),
    ("top-p nan", cli("generate", "--top-p", "nan", bundle="charlm"), 2, "top_p must be in (0, 1]"),
    ("top-p zero", cli("generate", "--top-p", "0", bundle="charlm"), 2, "top_p must be in (0, 1]"),
    ("top-k zero", cli("generate", "--top-k", "0", bundle="charlm"), 2, "top_k must be >= 1"),
    (
        "seed negative",
        cli("generate", "--seed", "-1", bundle="charlm"),
        2,
        "seed must be an integer 0 <= seed < 2**32",
    ),
    (
        "seed huge",
        cli("generate", "--seed", str(2**40), bundle="charlm"),
        2,
        "seed must be an integer 0 <= seed < 2**32",
    ),
    (
        "held tokens",
        cli("generate", "--max-new-tokens", str(10**12), bundle="charlm"),
        2,
        "use stream() (the CLI's --stream)",
    ),
    (
        "negative tokens",
        cli("generate", "--max-new-tokens", "-1", bundle="charlm"),
        2,
        "max_new_tokens must be >= 0",
    ),
    ("empty prompt", cli("generate", "--prompt", "", bundle="charlm"), 2, "the prompt is empty"),
    (
        "unknown characters",
        cli("generate", "--prompt", "\u20ac", bundle="charlm"),
        2,
        "not in the model's vocabulary",
    ),
    (
        "generate on classifier",
        cli("generate", bundle="lenet"),
        2,
        "generate needs a generation bundle",
    ),
    (
        "unknown device",
        cli("generate", "--device", "npu", bundle="charlm"),
        2,
        "unknown device 'npu'",
    ),
    (
        "missing device",
        cli("generate", "--device", "cuda", bundle="charlm"),
        2,
        "CUDAExecutionProvider",
    ),
    # --- classify, predict ---------------------------------------------------------------------------
    ("image missing", cli("classify", "nope.png", bundle="cnn"), 2, "image not found: nope.png"),
    ("no images", cli("classify", bundle="cnn"), 2, "no images given"),
    (
        "text for images",
        cli("classify", "--text", "hello", bundle="cnn"),
        2,
        "classifies images, not text",
    ),
    (
        "classify regressor",
        cli("classify", "x.png", bundle="linear"),
        2,
        "classify needs an image classifier",
    ),
    ("decompression bomb", _bomb, 2, "cannot read image"),
    ("binary csv", _binary_csv, 2, "is not a text CSV file"),
    ("row of text", cli("predict", "a,b", bundle="linear"), 2, "is not numbers"),
    ("row with nan", cli("predict", "nan,3", bundle="linear"), 2, "non-finite value"),
    ("row too short", cli("predict", "25", bundle="linear"), 2, "the model expects 2"),
    ("predict images", cli("predict", "1,2", bundle="cnn"), 2, "not a tabular bundle"),
    # --- training ----------------------------------------------------------------------------------------
    (
        "train seed negative",
        cli("train", "linear", "--seed", "-1"),
        2,
        "--seed must be an integer 0 <= seed < 2**32",
    ),
    (
        "train seed huge",
        cli("train", "linear", "--seed", str(2**33)),
        2,
        "--seed must be an integer",
    ),
    ("train unknown model", cli("train", "gpt"), 2, "unknown model 'gpt'; known models:"),
    ("train zero epochs", cli("train", "linear", "--epochs", "0"), 2, "--epochs"),
    # --- export: never lose the source, never half-write, never two writers ----------------------
    ("out is the checkpoint", _out_is_source, 2, "overlaps the source"),
    ("out inside the checkpoint", _out_inside_source, 2, "overlaps the source"),
    ("out contains the checkpoint", _out_contains_source, 2, "overlaps the source"),
    ("out is the current directory", _out_is_cwd, 2, "is the current directory or contains it"),
    ("out exists", _out_exists, 2, "already exists; pass --force"),
    ("out locked by another export", _out_locked, 2, "another edgekit process is writing"),
    (
        "atol nan",
        cli("export", "--atol", "nan", ckpt="linear"),
        2,
        "tolerances must be positive finite",
    ),
    (
        "atol negative",
        cli("export", "--atol", "-1", ckpt="linear"),
        2,
        "tolerances must be positive finite",
    ),
    ("opset too old", cli("export", "--opset", "3", ckpt="linear"), 2, "unsupported opset 3"),
    (
        "verify zero steps",
        cli("verify", "--steps", "0", bundle="charlm"),
        2,
        "--steps must be >= 1",
    ),
    # --- bench -------------------------------------------------------------------------------------------
    (
        "bench batch zero",
        cli("bench", "--batch", "0", bundle="linear"),
        2,
        "--batch must be comma-separated positive integers",
    ),
    (
        "bench rounds zero",
        cli("bench", "--rounds", "0", bundle="linear"),
        2,
        "--rounds must be >= 1",
    ),
    (
        "bench unknown backend",
        cli("bench", "--backends", "npu", bundle="linear"),
        2,
        "known backends:",
    ),
]


@pytest.fixture
def case_dir(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> Path:
    """A scratch folder holding a copy of a checkpoint (`ck`), so a refusal can be seen to keep it."""
    shutil.copytree(tiny_checkpoints["linear"], tmp_path / "ck")
    ckpts = tmp_path.parent / "ckpts"
    if not ckpts.exists():
        shutil.copytree(tiny_checkpoints["linear"], ckpts / "linear")
    return tmp_path


def test_the_catalogue_is_large() -> None:
    assert len(CATALOGUE) >= 60 and len({c[0] for c in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize(
    ("label", "setup", "code", "message"), CATALOGUE, ids=[c[0] for c in CATALOGUE]
)
def test_bad_input(
    label: str, setup: Setup, code: int, message: str,
    tiny_bundles: dict[str, Path], case_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(case_dir)  # a case that changes directory changes it back afterwards
    args = setup(tiny_bundles, case_dir)
    before = sorted(p.relative_to(case_dir) for p in case_dir.rglob("*"))
    try:
        result = run(*args)
    finally:
        while LOCKS:
            LOCKS.pop().close()
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], out
    # nothing lost, nothing half-written: the checkpoint is intact and no temporary folder is left
    assert (case_dir / "ck" / "weights.safetensors").is_file()
    after = sorted(p.relative_to(case_dir) for p in case_dir.rglob("*"))
    assert after == before, "the command left or removed files"


def test_temp_folders_of_dead_writers_are_removed(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    stale = tmp_path / ".out.tmp-999999999-abc"  # no such process
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    result = run("export", tiny_checkpoints["linear"], "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _forge(ckpt: Path, tmp_path: Path, **config: Any) -> Path:
    """A checkpoint whose config was edited and whose content hash was recomputed to match."""
    from edgekit.training.checkpoint import METADATA, _content_hash

    forged = tmp_path / "forged"
    shutil.copytree(ckpt, forged)
    meta = json.loads((forged / METADATA).read_text())
    meta["config"].update(config)
    meta["content_sha256"] = _content_hash(meta)
    (forged / METADATA).write_text(json.dumps(meta))
    return forged


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"hidden": 10**9}, "the config cannot be built"),
        ({"hidden": 512}, "the config does not match the weights"),
        ({"layers": 4}, "the config does not match the weights"),
        ({"hidden": "256"}, "config has values of the wrong type: hidden='256' (expected int)"),
        ({"layers": -1}, "wrong type: layers=-1"),
    ],
)
def test_a_forged_checkpoint_config_is_refused_before_anything_is_built(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, config: dict, message: str
) -> None:
    forged = _forge(tiny_checkpoints["charlm"], tmp_path, **config)
    result = run("export", forged, "--out", tmp_path / "b")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.output
    assert not (tmp_path / "b").exists()


def test_unlisted_files_and_external_data_are_refused(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    """ONNX external data outside the manifest's list is never loaded: not inside the bundle (it would
    escape the hash check), and not outside it (ONNX Runtime's own refusal, as one line)."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    b = tmp_path / "b"
    shutil.copytree(tiny_bundles["linear"], b)
    model = onnx.load(str(b / "model.onnx"))
    convert_model_to_external_data(model, location="weights.bin", size_threshold=0)
    onnx.save(model, str(b / "model.onnx"))
    manifest = json.loads((b / "edgekit.json").read_text())
    write_manifest(b, manifest)  # hashes model.onnx and weights.bin: a consistent bundle
    assert run("check", b).exit_code == 0
    manifest = json.loads((b / "edgekit.json").read_text())
    del manifest["files"]["weights.bin"]
    (b / "edgekit.json").write_text(json.dumps(manifest))
    result = run("check", b)
    assert (
        result.exit_code == 2 and "['weights.bin'] are not listed in the manifest" in result.output
    )
    # pointing outside the bundle: moved out and the graph rewritten to reach for it
    (b / "weights.bin").rename(tmp_path / "weights.bin")
    model = onnx.load(str(b / "model.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    (b / "model.onnx").write_bytes(model.SerializeToString())
    write_manifest(b, manifest)
    result = run("check", b)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "ONNX Runtime cannot load" in result.output


def test_a_broken_onnxruntime_install_is_not_reported_as_missing(tmp_path: Path) -> None:
    """An onnxruntime that is installed but fails to import (a GPU build without its CUDA libraries)
    says so, instead of sending the user to install what they have."""
    import subprocess
    import sys

    fake = tmp_path / "onnxruntime"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise ImportError('libcudart.so.12: cannot open shared object file')\n"
    )
    code = (
        "from edgekit._optional import require\n"
        "try:\n    require('onnxruntime', 'running bundles')\n"
        "except Exception as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    ).stdout  # fmt: skip
    assert "installed but cannot be imported" in out and "libcudart" in out


def test_a_tampered_engine_file_is_refused(tiny_bundles: dict[str, Path], tmp_path: Path) -> None:
    b = tmp_path / "b"
    shutil.copytree(tiny_bundles["linear"], b)
    (b / "engine.gpu.trt10.plan").write_bytes(b"\x00" * 64)
    manifest = json.loads((b / "edgekit.json").read_text())
    manifest["engines"] = [{"file": "engine.gpu.trt10.plan"}]
    write_manifest(b, manifest)
    (b / "engine.gpu.trt10.plan").write_bytes(b"\x01" * 64)
    result = run("check", b)
    assert result.exit_code == 2 and "engine.gpu.trt10.plan: sha256 does not match" in result.output


def test_a_weights_file_that_is_not_safetensors_is_refused(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """Even with both hashes recomputed to match, a weights file that is not safetensors is one line."""
    from edgekit.files import sha256_file
    from edgekit.training.checkpoint import METADATA, WEIGHTS, _content_hash

    forged = tmp_path / "forged"
    shutil.copytree(tiny_checkpoints["linear"], forged)
    (forged / WEIGHTS).write_bytes(b"\xff" * 64)
    meta = json.loads((forged / METADATA).read_text())
    meta["weights_sha256"] = sha256_file(forged / WEIGHTS)
    meta["content_sha256"] = _content_hash(meta)
    (forged / METADATA).write_text(json.dumps(meta))
    result = run("export", forged, "--out", tmp_path / "b")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "is not a safetensors file" in result.output
