"""A new user's second hour, from the command line only: a language model and a classifier of their
own (`export --module`, the language model importing a sibling file) through verify, check,
quantize, bench (with its torch row), serve and triton; `edgekit run` on every kind of bundle and on
a plain .onnx; one JSON document on stdout from every command's --json, in every outcome;
--version; stages shown while long work runs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekit.cli import app

runner = CliRunner()

LM_MODULE = """
import torch
from torch import nn


class GRULM(nn.Module):
    def __init__(self, vocab: int, hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens, h):
        y, h = self.gru(self.embed(tokens), h)
        return self.head(y), h
"""
LM_FACTORY = """
import torch
from gru_lm import GRULM  # a sibling file: the factory's folder is on the import path

CHARS = list("abcdefgh .")


def make():
    torch.manual_seed(0)
    return {
        "module": GRULM(len(CHARS)),
        "example_inputs": (torch.zeros(2, 3, dtype=torch.long), torch.zeros(1, 2, 16)),
        "input_names": ["tokens", "h"],
        "output_names": ["logits", "h_out"],
        "dynamic_axes": {"tokens": {0: "batch", 1: "time"}, "h": {1: "batch"},
                         "logits": {0: "batch", 1: "time"}, "h_out": {1: "batch"}},
        "state_pairs": [("h", "h_out")],
        "task": "generate",
        "vocab": CHARS,
    }
"""
CLASSIFIER_FACTORY = """
import torch
from torch import nn


def make():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    return {"module": module, "example_inputs": torch.zeros(2, 6), "input_names": ["x"],
            "output_names": ["logits"], "dynamic_axes": {"x": {0: "batch"}, "logits": {0: "batch"}},
            "task": "classify", "labels": ["a", "b", "c"]}
"""


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: Any) -> Any:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two modules, exported from the command line."""
    root = tmp_path_factory.mktemp("own")
    (root / "gru_lm.py").write_text(textwrap.dedent(LM_MODULE))
    (root / "make_lm.py").write_text(textwrap.dedent(LM_FACTORY))
    (root / "make_clf.py").write_text(textwrap.dedent(CLASSIFIER_FACTORY))
    bundles = {"lm": root / "b" / "lm", "clf": root / "b" / "clf"}
    ok("export", "--module", f"{root / 'make_lm.py'}:make", "--out", bundles["lm"], "--steps", 20)
    ok("export", "--module", f"{root / 'make_clf.py'}:make", "--out", bundles["clf"])
    return bundles


@pytest.mark.parametrize("name", ["lm", "clf"])
def test_an_own_module_verifies_and_checks_from_what_its_manifest_records(
    own: dict[str, Path], name: str
) -> None:
    manifest = json.loads((own[name] / "edgekit.json").read_text())
    assert manifest["source"]["factory"].endswith(":make")
    report = json.loads(ok("verify", own[name], "--steps", 10, "--json").stdout)
    assert report["passed"] is True
    assert json.loads(ok("check", own[name], "--json").stdout)["passed"] is True


def test_verify_refuses_a_factory_that_builds_other_weights(
    own: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other.py"
    other.write_text(CLASSIFIER_FACTORY.replace("manual_seed(0)", "manual_seed(1)"))
    result = invoke("verify", own["clf"], "--module", f"{other}:make", "--json")
    assert result.exit_code == 2
    assert "is not this bundle's source" in json.loads(result.stdout)["error"]


def test_an_own_language_model_quantizes_on_torchs_rollout(own: dict[str, Path]) -> None:
    record = json.loads(ok("quantize", own["lm"], "--fp16", "--json").stdout)
    assert record["precision"] == "fp16"
    assert "greedy rollout" in record["gates"]["held_out"]


def test_bench_has_a_torch_row_for_an_own_module(own: dict[str, Path]) -> None:
    args = ["--backends", "torch,ort-cpu", "--batch", 1, "--iters", 10, "--rounds", 1]
    doc = json.loads(ok("bench", own["clf"], *args, "--no-cold-start", "--json").stdout)
    assert doc["backends"]["torch"]["status"] == "ok", doc["backends"]["torch"]
    assert {r["backend"] for r in doc["results"]} >= {"torch", "ort-cpu"}


def test_an_own_module_is_served_and_written_for_triton(own: dict[str, Path], tmp_path: Path):
    import http.client

    from tests.test_serve import start_server

    written = json.loads(
        ok("triton", own["lm"], own["clf"], "--out", tmp_path / "repo", "--json").stdout
    )
    assert set(written["models"]) == {"lm", "clf"}
    assert (tmp_path / "repo" / "lm" / "config.pbtxt").is_file()
    url, _, server = start_server([("lm", own["lm"]), ("clf", own["clf"])])
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = {"text_input": "abc", "parameters": {"max_tokens": 5, "temperature": 0}}
        conn.request("POST", "/v2/models/lm/generate", json.dumps(body))
        assert len(json.loads(conn.getresponse().read())["text_output"]) == 5
        tensor = {"name": "x", "datatype": "FP32", "shape": [1, 6], "data": [1.0] * 6}
        conn.request("POST", "/v2/models/clf/infer", json.dumps({"inputs": [tensor]}))
        assert json.loads(conn.getresponse().read())["outputs"][0]["shape"] == [1, 3]
    finally:
        conn.close()
        server.should_exit = True


def test_edgekit_run_takes_every_kind_of_bundle_and_a_plain_onnx(
    tiny_bundles: dict[str, Path], own: dict[str, Path], tmp_path: Path
) -> None:
    from edgekit.runtimes.loader import load

    kinds = {**tiny_bundles, **own, "plain onnx": own["clf"] / "model.onnx"}
    for kind, path in kinds.items():
        doc = json.loads(ok("run", path, "--json").stdout)
        assert doc["outputs"], kind
    # named inputs in, outputs saved: the same numbers as the runtime's
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.savez(tmp_path / "x.npz", x=x)
    ok("run", own["clf"], "--input", tmp_path / "x.npz", "--output", tmp_path / "y.npz")
    with np.load(tmp_path / "y.npz") as saved:
        np.testing.assert_allclose(
            saved["logits"], load(own["clf"]).backend.run({"x": x})["logits"]
        )
    # compared with expected outputs (Polygraphy's --load-outputs): exit 1 where they differ
    ok(
        "run",
        own["clf"] / "model.onnx",
        "--input",
        tmp_path / "x.npz",
        "--expect",
        tmp_path / "y.npz",
    )
    with np.load(tmp_path / "y.npz") as saved:
        np.savez(tmp_path / "off.npz", logits=saved["logits"] + 0.01)
    off = invoke("run", own["clf"], "--input", tmp_path / "x.npz", "--expect", tmp_path / "off.npz",
                 "--json")  # fmt: skip
    assert off.exit_code == 1 and json.loads(off.stdout)["comparison"]["passed"] is False
    # a recurrent bundle's state starts at zero when left out
    np.savez(tmp_path / "t.npz", tokens=np.array([[1, 2, 3]]))
    doc = json.loads(ok("run", own["lm"], "--input", tmp_path / "t.npz", "--json").stdout)
    assert doc["inputs"]["h"]["shape"] == [1, 1, 16] and doc["outputs"]["logits"]["shape"][:2] == [
        1,
        3,
    ]
    result = invoke("run", own["clf"], "--input", tmp_path / "t.npz")
    assert (
        result.exit_code == 2 and "unknown inputs ['tokens']; missing inputs ['x']" in result.output
    )


def test_info_and_bench_read_a_plain_onnx(own: dict[str, Path]) -> None:
    plain = own["clf"] / "model.onnx"
    doc = json.loads(ok("info", plain, "--json").stdout)
    assert [t["name"] for t in doc["inputs"]] == ["x"] and doc["kind"] == "onnx"
    args = ["--backends", "torch,ort-cpu", "--batch", 1, "--iters", 10, "--rounds", 1, "--json"]
    doc = json.loads(ok("bench", plain, *args).stdout)
    assert doc["backends"]["ort-cpu"]["status"] == "ok"
    assert doc["backends"]["torch"]["status"] == "skipped"  # no torch source for a plain file


def json_doc(result: Any) -> dict[str, Any]:
    """stdout is exactly one JSON document."""
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc


def test_every_json_prints_one_document_when_it_fails(own: dict[str, Path], tmp_path: Path):
    missing = tmp_path / "missing"
    failing = {
        "info": ["info", missing],
        "export": ["export", missing],
        "verify": ["verify", missing],
        "check": ["check", missing],
        "quantize": ["quantize", missing, "--int8"],
        "classify": ["classify", own["clf"], "nothing.png"],
        "predict": ["predict", missing, "--row", "1,2"],
        "generate": ["generate", own["clf"]],
        "run": ["run", missing],
        "bench": ["bench", missing],
        "triton": ["triton", missing, "--out", tmp_path / "repo"],
        "train": ["train", "--model", "nope"],
        "a usage error": ["run", own["clf"], "--bogus"],
    }
    for what, args in failing.items():
        result = invoke(*args, "--json")
        assert result.exit_code == 2, (what, result.output)
        doc = json_doc(result)
        assert doc["exit_code"] == 2 and doc["error"], (what, doc)


def test_json_in_the_other_outcomes(own: dict[str, Path]) -> None:
    doc = json_doc(invoke("quantize", own["clf"], "--int8", "--json"))  # too small to pay
    assert doc == {"precision": "int8", "kept": False, "reason": doc["reason"]} and doc["reason"]
    doc = json_doc(ok("generate", own["lm"], "--prompt", "ab", "--max-new-tokens", 4, "--json"))
    assert doc["prompt"] == "ab" and len(doc["text"]) == 4


def test_version() -> None:
    from edgekit.version import __version__

    assert ok("--version").stdout.strip() == f"edgekit {__version__}"


def test_long_work_shows_its_stages(own: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKIT_PROGRESS", "1")
    result = ok("verify", own["clf"], "--json")
    assert "parity: export shapes" in result.stderr and " s] " in result.stderr
    json_doc(result)  # stdout is still only the document
    monkeypatch.delenv("EDGEKIT_PROGRESS")
    assert "parity:" not in ok("verify", own["clf"]).stderr  # not a terminal: nothing extra


@pytest.mark.skipif(
    not __import__("os").environ.get("EDGEKIT_TRITONSERVER"),
    reason="EDGEKIT_TRITONSERVER is not set (the path of a tritonserver with the onnxruntime "
    "backend; .ci/run sets one up from ../shared/triton)",
)
def test_a_real_triton_serves_the_repository_written_for_own_modules(
    own: dict[str, Path], tmp_path: Path
) -> None:
    from tests.remote_checks import check_outputs, check_rollout
    from tests.triton_process import running_triton

    repo = tmp_path / "repo"
    ok("triton", own["lm"], own["clf"], "--out", repo)
    with running_triton([repo], ["lm", "clf"], tmp_path / "triton.log") as url:
        check_outputs(url, "clf", own["clf"])
        check_rollout(url, "lm", own["lm"], 50, 4242)
