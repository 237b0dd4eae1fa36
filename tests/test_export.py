"""Export: every zoo model and cell becomes a bundle whose parity with torch is proven."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgekit.exporters as exporters
from edgekit.errors import CheckFailed, InputError
from edgekit.exporters.verify import verify_bundle
from edgekit.files import sha256_file
from edgekit.manifest import MANIFEST, read_manifest
from edgekit.models.charlm import CELLS, CharLM, CharLMConfig
from tests.conftest import train_tiny

CLASSIFIERS = ["linear", "logistic", "cnn", "lenet", "rowlstm"]


@pytest.fixture(scope="module")
def lm_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lm")
    return {
        cell: train_tiny("charlm", root / cell, cell=cell, layers=2, hidden=12).path  # type: ignore[attr-defined]
        for cell in CELLS
    }


def _export(ckpt: Path, out: Path, **kw) -> dict:
    _, manifest = exporters.bundle_from_checkpoint(ckpt, out, steps=kw.pop("steps", 30), **kw)
    return manifest


# --- the parity suite: zoo x exporters x shapes ---------------------------------------------------


@pytest.mark.parametrize("model", CLASSIFIERS)
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_classifiers_export_with_both_exporters(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, model: str, exporter: str
) -> None:
    manifest = _export(tiny_checkpoints[model], tmp_path / "b", exporter=exporter)
    parity = manifest["parity"]
    assert parity["passed"]
    cases = [c["case"] for c in parity["cases"]]
    assert cases[:3] == ["export shapes B=2", "other shape B=1", "other shape B=5"]
    assert any(c.startswith("real data") for c in cases), "real data from the checkpoint is checked"
    assert manifest["inputs"][0]["shape"][0] == "batch"


@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_exports_with_auto(
    lm_checkpoints: dict[str, Path], tmp_path: Path, cell: str
) -> None:
    manifest = _export(lm_checkpoints[cell], tmp_path / "b", steps=200)
    parity = manifest["parity"]
    assert parity["passed"]
    assert manifest["exporter"]["name"] == "torchscript"
    cases = {c["case"] for c in parity["cases"]}
    assert {"export shapes B=2 T=3", "other shape B=1 T=1", "other shape B=5 T=37"} <= cases
    assert any(c.startswith("real text") for c in cases)
    rollout = parity["rollout"]
    assert rollout["steps"] == 200 and len(rollout["max_state_drift"]) == 200
    assert rollout["first_token_mismatch"] is None
    names = ("h", "c") if "lstm" in cell else ("h",)
    assert manifest["state"] == [
        {
            "input": f"state_in.{n}",
            "output": f"state_out.{n}",
            "init": "zeros",
            "shape": [2, "batch", 12],
            "batch_axis": 1,
        }
        for n in names
    ]
    vocab = len(manifest["vocab"])  # token ids range over the vocabulary, recorded for parity
    assert manifest["inputs"][0] == {
        "name": "tokens",
        "dtype": "int64",
        "shape": ["batch", "time"],
        "range": [0, vocab],
    }


@pytest.mark.parametrize("cell", ["scratch-rnn", "scratch-lstm", "rnn"])
def test_dynamo_freezes_time_for_python_loops_and_is_caught(
    lm_checkpoints: dict[str, Path], tmp_path: Path, cell: str
) -> None:
    """torch.export unrolls a Python loop over time at the example length: a frozen time axis."""
    with pytest.raises(CheckFailed) as info:
        _export(lm_checkpoints[cell], tmp_path / "b", exporter="dynamo")
    message = str(info.value)
    assert "input tokens axis 1 (time) is frozen to 3" in message
    assert "likely cause" in message and "--exporter torchscript" in message
    assert not (tmp_path / "b").exists()
    assert list(tmp_path.iterdir()) == [], "no temporary directory is left behind"


def test_gru_parity_guard(lm_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """GRU exports were silently wrong before onnxscript 0.7.1: keep a GRU parity check."""
    import onnxscript
    from packaging.version import Version

    assert Version(onnxscript.__version__) >= Version("0.7.1")
    manifest = _export(lm_checkpoints["gru"], tmp_path / "b", steps=100)
    worst = max(o["max_abs"] for c in manifest["parity"]["cases"] for o in c["outputs"])
    assert worst < 1e-4
    graph = onnx.load(str(tmp_path / "b" / "model.onnx"))
    assert any(n.op_type == "GRU" for n in graph.graph.node)


# --- the bundle ---------------------------------------------------------------------------------------


def test_bundle_manifest_and_graph(lm_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "b"
    _export(lm_checkpoints["lstm"], out)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["schema"] == "edgekit.bundle" and manifest["schema_version"] == 1
    assert (
        manifest["task"] == "generate"
        and len(manifest["vocab"]) == manifest["model"]["config"]["vocab_size"]
    )
    for name, info in manifest["files"].items():
        assert sha256_file(out / name) == info["sha256"]
    assert set(manifest["files"]) == {p.name for p in out.iterdir()} - {MANIFEST}
    assert manifest["source"]["sha256"] and manifest["source"]["checkpoint"]
    assert {"torch", "onnx", "onnxscript", "onnxruntime"} <= set(manifest["versions"])
    assert manifest["exporter"]["attempts"][-1]["passed"]
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["source_sha256"] == manifest["source"]["sha256"] and props["edgekit_version"]


def test_image_bundle_records_preprocessing(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    manifest = _export(tiny_checkpoints["cnn"], tmp_path / "b")
    assert manifest["preprocess"]["mean"] == [0.485, 0.456, 0.406]
    assert manifest["labels"] == ["ellipse", "stripes"] and manifest["head"] == "probability"


def test_verify_passes_then_catches_tampering(
    lm_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "b"
    _export(lm_checkpoints["scratch-lstm"], out)
    assert verify_bundle(out, steps=20).passed
    data = bytearray((out / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256 does not match the manifest"):
        verify_bundle(out)


def test_verify_refuses_a_checkpoint_that_is_not_the_source(
    lm_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    _export(lm_checkpoints["lstm"], tmp_path / "b")
    with pytest.raises(InputError, match="is not this bundle's source"):
        verify_bundle(tmp_path / "b", checkpoint=lm_checkpoints["gru"])


# --- bad input --------------------------------------------------------------------------------------


def test_existing_out_is_refused_unless_force(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "b"
    _export(tiny_checkpoints["linear"], out)
    before = (out / MANIFEST).read_text()
    with pytest.raises(InputError, match="already exists; pass --force"):
        _export(tiny_checkpoints["linear"], out)
    assert (out / MANIFEST).read_text() == before
    _export(tiny_checkpoints["linear"], out, force=True)
    read_manifest(out)


@pytest.mark.parametrize("opset", [3, 99])
def test_unsupported_opset(tiny_checkpoints: dict[str, Path], tmp_path: Path, opset: int) -> None:
    with pytest.raises(InputError, match=f"unsupported opset {opset}"):
        _export(tiny_checkpoints["linear"], tmp_path / "b", opset=opset)


def test_parity_failure_writes_nothing(lm_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CheckFailed, match="export failed parity") as info:
        _export(lm_checkpoints["lstm"], tmp_path / "b", atol=1e-15, rtol=1e-15)
    assert "FAIL" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_checkpoint(lm_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    shutil.copytree(lm_checkpoints["lstm"], ck)
    (ck / "weights.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="truncated or were modified"):
        _export(ck, tmp_path / "b")
    with pytest.raises(InputError, match="checkpoint not found"):
        _export(tmp_path / "missing", tmp_path / "b")


# --- any nn.Module: a user's own recurrent cell ---------------------------------------------------


class MinimalGatedLM(torch.nn.Module):
    """A user's own cell (a minimal gated unit), written with a scripted time loop."""

    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.cell = torch.jit.script(_MGU(hidden))
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.cell(self.embed(tokens), h)
        return self.head(out), h


class _MGU(torch.nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.f = torch.nn.Linear(2 * hidden, hidden)
        self.c = torch.nn.Linear(2 * hidden, hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = h[0]
        outs = []
        for t in range(x.shape[1]):
            xt = x[:, t]
            f = torch.sigmoid(self.f(torch.cat([xt, state], 1)))
            cand = torch.tanh(self.c(torch.cat([xt, f * state], 1)))
            state = (1 - f) * state + f * cand
            outs.append(state)
        return torch.stack(outs, 1), state[None]


# the user scripts their own cell here (that is how a Python time loop keeps a dynamic length)
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_users_own_recurrent_module_exports(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = MinimalGatedLM(vocab=7, hidden=5)
    example = (torch.randint(0, 7, (2, 3)), torch.zeros(1, 2, 5))
    _path, manifest = exporters.export(
        module,
        example,
        tmp_path / "b",
        exporter="torchscript",
        input_names=["tokens", "state_in.h"],
        output_names=["logits", "state_out.h"],
        dynamic_axes={
            "tokens": {0: "batch", 1: "time"},
            "state_in.h": {1: "batch"},
            "logits": {0: "batch", 1: "time"},
            "state_out.h": {1: "batch"},
        },
        state_pairs=[("state_in.h", "state_out.h")],
        task="generate",
        vocab=list("abcdefg"),
        steps=50,
    )
    assert manifest["parity"]["passed"] and manifest["parity"]["rollout"]["steps"] == 50
    assert manifest["source"]["module"] == "MinimalGatedLM"
    assert manifest["state"][0]["shape"] == [1, "batch", 5]


# --- the seed toy, trained to convergence -----------------------------------------------------------


def test_hello_to_ohlol_toy_survives_export(tmp_path: Path) -> None:
    """The seed's toy: an RNN learns "hello" -> "ohlol" (vocab e, h, l, o); the bundle agrees."""
    import onnxruntime as ort

    from edgekit.models.flat import OneStateLM

    vocab = ["e", "h", "l", "o"]
    x = torch.tensor([[vocab.index(c) for c in "hello"]])
    y = torch.tensor([[vocab.index(c) for c in "ohlol"]])
    torch.manual_seed(0)
    lm = CharLM(CharLMConfig(vocab_size=4, cell="rnn", layers=1, hidden=8))
    opt = torch.optim.Adam(lm.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        logits, _ = lm(x)
        loss = torch.nn.functional.cross_entropy(logits[0], y[0])
        loss.backward()
        opt.step()
    lm.eval()
    assert "".join(vocab[i] for i in lm(x)[0].argmax(-1)[0]) == "ohlol"
    module = OneStateLM(lm)
    example = (torch.randint(0, 4, (2, 3)), torch.zeros(1, 2, 8))
    exporters.export(
        module,
        example,
        tmp_path / "toy",
        input_names=["tokens", "state_in.h"],
        output_names=["logits", "state_out.h"],
        state_pairs=[("state_in.h", "state_out.h")],
        dynamic_axes={
            "tokens": {0: "batch", 1: "time"},
            "state_in.h": {1: "batch"},
            "logits": {0: "batch", 1: "time"},
            "state_out.h": {1: "batch"},
        },
        task="generate",
        vocab=vocab,
        steps=20,
    )
    sess = ort.InferenceSession(str(tmp_path / "toy" / "model.onnx"))
    logits, _ = sess.run(None, {"tokens": x.numpy(), "state_in.h": np.zeros((1, 1, 8), np.float32)})
    assert "".join(vocab[i] for i in logits[0].argmax(-1)) == "ohlol"


# --- property test ---------------------------------------------------------------------------------


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cell=st.sampled_from(CELLS),
    layers=st.integers(1, 3),
    hidden=st.integers(1, 24),
    embed=st.sampled_from([0, 5]),
    batch=st.integers(1, 6),
    time=st.integers(1, 40),
)
def test_property_parity(tmp_path_factory, cell, layers, hidden, embed, batch, time) -> None:
    from edgekit.models.flat import OneStateLM, TwoStateLM
    from edgekit.parity import compare_case
    from edgekit.reference.torch_backend import TorchBackend
    from edgekit.runtimes.onnxruntime import OrtBackend

    torch.manual_seed(hidden * 31 + layers)
    lm = CharLM(
        CharLMConfig(vocab_size=9, cell=cell, layers=layers, hidden=hidden, embed=embed)
    ).eval()
    module = TwoStateLM(lm) if "lstm" in cell else OneStateLM(lm)
    names = ["h", "c"] if "lstm" in cell else ["h"]
    example = (torch.randint(0, 9, (2, 3)), *tuple(torch.zeros(layers, 2, hidden) for _ in names))
    axes = {"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}}
    axes |= {f"state_in.{n}": {1: "batch"} for n in names} | {
        f"state_out.{n}": {1: "batch"} for n in names
    }
    out = tmp_path_factory.mktemp("prop") / "b"
    _, manifest = exporters.export(
        module,
        example,
        out,
        input_names=["tokens"] + [f"state_in.{n}" for n in names],
        output_names=["logits"] + [f"state_out.{n}" for n in names],
        dynamic_axes=axes,
        state_pairs=[(f"state_in.{n}", f"state_out.{n}") for n in names],
        task="generate",
        steps=10,
    )
    from edgekit.iospec import IOContract

    contract = IOContract.from_manifest(manifest)
    contract.vocab_size = 9
    feeds = contract.example(batch, time, np.random.default_rng(0))
    result = compare_case(
        "drawn",
        feeds,
        TorchBackend(module, contract).run,
        OrtBackend(out / "model.onnx", contract).run,
        1e-4,
        1e-3,
    )
    assert result.passed, result
