"""Export any nn.Module a user brings: a catalogue of ordinary patterns (tests/user_modules/models.py).

Each pattern exports through `edgekit.export`, passes parity at other shapes, and runs through its
task API; recurrent ones generate greedily exactly as a torch loop does for 200 tokens, alone and
batched. Patterns that cannot be supported fail with an edgekit error naming the problem and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import edgekit
from edgekit.errors import CheckFailed, EdgekitError, InputError
from tests.user_modules import models as m

STEPS = 200
PROMPTS = ["abc", "j.", "hello"[:1], "ab cd"]
TorchStep = Callable[[torch.nn.Module, torch.Tensor, Any], tuple[torch.Tensor, Any]]


def _ids(text: str) -> torch.Tensor:
    return torch.tensor([[m.CHARS.index(ch) for ch in text]])  # (1, T)


def torch_greedy(module: torch.nn.Module, step: TorchStep, state: Any, prompt: str, n: int) -> str:
    """Greedy decoding written against the torch module directly: the reference."""
    with torch.no_grad():
        logits, state = step(module, _ids(prompt), state)
        text = ""
        for _ in range(n):
            token = int(logits[0].argmax())
            text += m.CHARS[token]
            logits, state = step(module, torch.tensor([[token]]), state)
    return text


def check_generation(bundle: Path, module: torch.nn.Module, step: TorchStep, state: Any) -> None:
    g = edgekit.load(bundle)
    expected = [torch_greedy(module, step, state, p, STEPS) for p in PROMPTS]
    assert [g.generate(p, STEPS, temperature=0) for p in PROMPTS] == expected
    assert g.generate_batch(PROMPTS, STEPS, temperature=0) == expected
    session = g.session()
    session.feed(PROMPTS[0])
    assert "".join(session.step(temperature=0) for _ in range(20)) == expected[0][:20]


def lm_axes(tokens: str, logits: str, state: dict[str, int], time: str = "time") -> dict:
    axes = {tokens: {0: "batch", 1: time}, logits: {0: "batch", 1: time}}
    return axes | {name: {axis: "batch"} for name, axis in state.items()}


# --- recurrent language models ---------------------------------------------------------------------


def test_batch_major_lstm(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = m.LSTMLM()
    h = torch.zeros(2, 2, m.H)
    bundle, manifest = edgekit.export(
        module, (torch.zeros(2, 3, dtype=torch.long), h, h), tmp_path / "b",
        input_names=["tokens", "state_in.h", "state_in.c"],
        output_names=["logits", "state_out.h", "state_out.c"],
        dynamic_axes=lm_axes("tokens", "logits", {"state_in.h": 1, "state_in.c": 1,
                                                  "state_out.h": 1, "state_out.c": 1}),
        state_pairs=[("state_in.h", "state_out.h"), ("state_in.c", "state_out.c")],
        task="generate", vocab=m.CHARS,
    )  # fmt: skip
    assert manifest["inputs"][0]["range"] == [0, m.V]

    def step(mod, ids, state):
        logits, h, c = mod(ids, *state)
        return logits[:, -1], (h, c)

    z = torch.zeros(2, 1, m.H)
    check_generation(bundle, module, step, (z, z))


def test_time_major_lstm_with_nested_state(tmp_path: Path) -> None:
    """tokens (T, B); state passed and returned as a tuple; outputs named by their paths."""
    torch.manual_seed(1)
    module = m.TimeMajorLSTMLM()
    h = torch.zeros(1, 2, m.H)
    bundle, manifest = edgekit.export(
        module, (torch.zeros(3, 2, dtype=torch.long), (h, h)), tmp_path / "b",
        input_names=["tokens", "h", "c"],
        dynamic_axes={"tokens": {0: "time", 1: "batch"}, "output.0": {0: "time", 1: "batch"},
                      "h": {1: "batch"}, "c": {1: "batch"},
                      "output.1.0": {1: "batch"}, "output.1.1": {1: "batch"}},
        state_pairs=[("h", "output.1.0"), ("c", "output.1.1")],
        task="generate", vocab=m.CHARS,
    )  # fmt: skip
    assert [o["name"] for o in manifest["outputs"]] == ["output.0", "output.1.0", "output.1.1"]

    def step(mod, ids, state):
        logits, state = mod(ids.T, state)  # the module wants (T, B)
        return logits[-1], state

    z = torch.zeros(1, 1, m.H)
    check_generation(bundle, module, step, (z, z))

    from edgekit.bench.core import run_bench
    from edgekit.bench.runner import Budget

    doc = run_bench(bundle, ["ort-cpu"], [1, 3], Budget(warmup=1, iters=10, rounds=1), None, False)
    cases = {r["case"] for r in doc["results"]}
    assert {"step bound B=3", "step host B=3", "prefill T=128"} <= cases


def test_gru_with_dict_output(tmp_path: Path) -> None:
    torch.manual_seed(2)
    module = m.GRULM()
    bundle, manifest = edgekit.export(
        module, (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, m.H)), tmp_path / "b",
        input_names=["tokens", "state_in.h"],
        dynamic_axes=lm_axes("tokens", "output.logits", {"state_in.h": 1, "output.h": 1}),
        state_pairs=[("state_in.h", "output.h")], task="generate", vocab=m.CHARS,
    )  # fmt: skip
    assert [o["name"] for o in manifest["outputs"]] == ["output.logits", "output.h"]

    def step(mod, ids, h):
        out = mod(ids, h)
        return out["logits"][:, -1], out["h"]

    check_generation(bundle, module, step, torch.zeros(2, 1, m.H))


def test_rnn_with_a_sequence_axis_of_any_name(tmp_path: Path) -> None:
    torch.manual_seed(3)
    module = m.RNNLM()
    bundle, manifest = edgekit.export(
        module, (torch.zeros(2, 4, dtype=torch.long), torch.zeros(1, 2, m.H)), tmp_path / "b",
        input_names=["tokens", "h"], output_names=["logits", "h_next"],
        dynamic_axes=lm_axes("tokens", "logits", {"h": 1, "h_next": 1}, time="seq"),
        axes={"seq": {"role": "time"}}, int_ranges={"tokens": (0, m.V)},
        state_pairs=[("h", "h_next")], task="generate", vocab=m.CHARS,
    )  # fmt: skip
    assert {"name": "seq", "role": "time", "min": 1, "example": 4} in manifest["axes"]
    cases = [c["case"] for c in manifest["parity"]["cases"]]
    assert cases == ["export shapes B=2 T=4", "other shape B=1 T=1", "other shape B=5 T=37"]

    def step(mod, ids, h):
        logits, h = mod(ids, h)
        return logits[:, -1], h

    check_generation(bundle, module, step, torch.zeros(1, 1, m.H))


def test_python_cell_loop_is_scripted_automatically(tmp_path: Path) -> None:
    """Tracing unrolls the loop (time frozen); the `script` exporter compiles it into an ONNX Loop.
    The state is (B, H): batch on axis 0."""
    torch.manual_seed(4)
    module = m.CellLoopLM()
    z = torch.zeros(2, m.H)
    bundle, manifest = edgekit.export(
        module, (torch.zeros(2, 3, dtype=torch.long), z, z), tmp_path / "b",
        input_names=["tokens", "h", "c"], output_names=["logits", "h_out", "c_out"],
        dynamic_axes=lm_axes("tokens", "logits", {"h": 0, "c": 0, "h_out": 0, "c_out": 0}),
        state_pairs=[("h", "h_out"), ("c", "c_out")], task="generate", vocab=m.CHARS,
    )  # fmt: skip
    attempts = manifest["exporter"]["attempts"]
    assert manifest["exporter"]["name"] == "script"
    assert [a["passed"] for a in attempts] == [False, False, True]  # tracing unrolled the loop
    assert [s["batch_axis"] for s in manifest["state"]] == [0, 0]

    def step(mod, ids, state):
        logits, h, c = mod(ids, *state)
        return logits[:, -1], (h, c)

    z1 = torch.zeros(1, m.H)
    check_generation(bundle, module, step, (z1, z1))


# torch warns that oneDNN has no projected LSTM and falls back to its own kernel: expected here
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
def test_proj_size_lstm_loads_or_fails_cleanly(tmp_path: Path) -> None:
    torch.manual_seed(5)
    module = m.ProjLSTMLM()
    h, c = torch.zeros(1, 2, 8), torch.zeros(1, 2, m.H)
    try:
        bundle, _ = edgekit.export(
            module, (torch.zeros(2, 3, dtype=torch.long), h, c), tmp_path / "b",
            input_names=["tokens", "h", "c"], output_names=["logits", "h_out", "c_out"],
            dynamic_axes=lm_axes("tokens", "logits", {"h": 1, "c": 1, "h_out": 1, "c_out": 1}),
            state_pairs=[("h", "h_out"), ("c", "c_out")], task="generate", vocab=m.CHARS,
        )  # fmt: skip
    except EdgekitError as exc:  # no exporter gives a graph that loads: say so per exporter
        message = str(exc)
        assert "no bundle written" in message and "Traceback" not in message
        assert all(f"[{e}]" in message for e in ("torchscript", "dynamo", "script"))
        assert "nn.LSTM(proj_size=8)" in message and "fix:" in message
        assert not (tmp_path / "b").exists()
        return

    def step(mod, ids, state):
        logits, h, c = mod(ids, *state)
        return logits[:, -1], (h, c)

    check_generation(bundle, module, step, (torch.zeros(1, 1, 8), torch.zeros(1, 1, m.H)))


# --- classifiers, vision, unusual inputs and outputs -----------------------------------------------

WORDS = ["<pad>", "<unk>"] + [f"w{i}" for i in range(48)]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_bilstm_text_classifier_from_text_and_ids(tmp_path: Path) -> None:
    torch.manual_seed(6)
    module = m.BiLSTMClassifier().eval()
    bundle, manifest = edgekit.export(
        module, torch.tensor([[3, 4, 5], [6, 7, 0]]), tmp_path / "b",
        input_names=["ids"], output_names=["logits"],
        dynamic_axes={"ids": {0: "batch", 1: "time"}, "logits": {0: "batch"}},
        task="classify", labels=["neg", "neu", "pos"], vocab=WORDS,
    )  # fmt: skip
    assert manifest["inputs"][0]["range"] == [0, len(WORDS)]  # from the vocabulary
    clf = edgekit.load(bundle)
    texts = ["w1 w2 w3", "w9", "w4 w40 w5 zzz"]  # zzz -> <unk>
    ids = [[WORDS.index(w) if w in WORDS else 1 for w in t.split()] for t in texts]
    with torch.no_grad():
        expected = [_softmax(module(torch.tensor([i])).numpy())[0] for i in ids]
    np.testing.assert_allclose(clf.predict_proba(texts), np.stack(expected), atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(ids), np.stack(expected), atol=1e-5)
    assert clf.predict("w1 w2 w3")[0].label == ["neg", "neu", "pos"][int(expected[0].argmax())]


def test_embedding_range_drives_parity_inputs(tmp_path: Path) -> None:
    """No vocab given: the ids' range comes from the nn.Embedding they feed, not from the example
    (all zeros here, which with padding_idx=0 would test nothing)."""
    torch.manual_seed(7)
    module = m.BiGRUTagger()
    bundle, manifest = edgekit.export(
        module, torch.zeros(2, 3, dtype=torch.long), tmp_path / "b",
        dynamic_axes={"input.0": {0: "batch", 1: "time"}, "output": {0: "batch", 1: "time"}},
    )  # fmt: skip
    assert manifest["inputs"][0] == {
        "name": "input.0", "dtype": "int64", "shape": ["batch", "time"], "range": [0, 30],
    }  # fmt: skip
    ids = np.random.default_rng(0).integers(0, 30, size=(4, 9))
    with torch.no_grad():
        expected = module(torch.from_numpy(ids)).numpy()
    got = edgekit.load(bundle).run({"input.0": ids})["output"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_transformer_classifier_with_a_mask(tmp_path: Path) -> None:
    torch.manual_seed(8)
    module = m.TransformerClassifier(vocab=len(WORDS)).eval()
    ids, mask = torch.tensor([[2, 3, 4, 5], [6, 7, 8, 9]]), torch.ones(2, 4, dtype=torch.long)
    bundle, manifest = edgekit.export(
        module, (ids, mask), tmp_path / "b",
        input_names=["ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"ids": {0: "batch", 1: "time"}, "attention_mask": {0: "batch", 1: "time"},
                      "logits": {0: "batch"}},
        int_ranges={"attention_mask": (0, 2)}, task="classify", labels=["no", "yes"], vocab=WORDS,
    )  # fmt: skip
    assert manifest["inputs"][1]["range"] == [0, 2]
    clf = edgekit.load(bundle)
    text = "w3 w4 w5"
    tokens = torch.tensor([[WORDS.index(w) for w in text.split()]])
    with torch.no_grad():
        expected = _softmax(module(tokens, torch.ones_like(tokens)).numpy())
    np.testing.assert_allclose(clf.predict_proba(text), expected, atol=1e-5)


def test_conv_net_that_needs_a_minimum_length(tmp_path: Path) -> None:
    torch.manual_seed(9)
    module = m.AudioConvNet()
    bundle, manifest = edgekit.export(
        module, torch.randn(2, 1, 16), tmp_path / "b",
        input_names=["audio"], output_names=["logits"],
        dynamic_axes={"audio": {0: "batch", 2: "samples"}, "logits": {0: "batch"}},
        axes={"samples": {"min": 5}}, task="classify", labels=list("abcd"),
    )  # fmt: skip
    cases = [c["case"] for c in manifest["parity"]["cases"]]
    assert cases == ["export shapes B=2 samples=16", "other shape B=1 samples=5",
                     "other shape B=5 samples=33"]  # fmt: skip
    x = np.random.default_rng(1).standard_normal((3, 1, 7)).astype(np.float32)
    with torch.no_grad():
        expected = _softmax(module(torch.from_numpy(x)).numpy())
    np.testing.assert_allclose(edgekit.load(bundle).predict_proba(x), expected, atol=1e-5)


def test_vision_net_with_a_dict_output(tmp_path: Path) -> None:
    torch.manual_seed(10)
    module = m.VisionNet()
    bundle, manifest = edgekit.export(
        module, torch.randn(2, 3, 32, 32), tmp_path / "b", input_names=["image"],
        dynamic_axes={"image": {0: "batch"}, "output.logits": {0: "batch"},
                      "output.features": {0: "batch"}},
        task="classify", labels=[str(i) for i in range(10)],
    )  # fmt: skip
    assert [o["name"] for o in manifest["outputs"]] == ["output.logits", "output.features"]
    x = np.random.default_rng(2).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = _softmax(module(torch.from_numpy(x))["logits"].numpy())
    np.testing.assert_allclose(edgekit.load(bundle).predict_proba(x), expected, atol=1e-5)


def test_dict_input_and_nested_tuple_output(tmp_path: Path) -> None:
    torch.manual_seed(11)
    module = m.TwoHeads()
    example = ({"a": torch.randn(2, 4), "b": torch.randn(2, 6)},)
    names = ["input.0.a", "input.0.b", "output.0", "output.1.0", "output.1.1"]
    bundle, manifest = edgekit.export(
        module, example, tmp_path / "b", dynamic_axes={n: {0: "batch"} for n in names}
    )
    assert [t["name"] for t in manifest["inputs"] + manifest["outputs"]] == names
    a, b = np.ones((3, 4), np.float32), np.full((3, 6), 0.5, np.float32)
    with torch.no_grad():
        score, (mean, spread) = module({"a": torch.from_numpy(a), "b": torch.from_numpy(b)})
    got = edgekit.load(bundle).run({"input.0.a": a, "input.0.b": b})
    for name, want in zip(names[2:], (score, mean, spread), strict=True):
        np.testing.assert_allclose(got[name], want.numpy(), atol=1e-5)


def test_regressor(tmp_path: Path) -> None:
    torch.manual_seed(12)
    module = m.Regressor()
    bundle, _ = edgekit.export(
        module, torch.randn(2, 5), tmp_path / "b", input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, task="regress",
    )  # fmt: skip
    rows = np.random.default_rng(3).standard_normal((6, 5)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(rows))[:, 0].numpy()
    np.testing.assert_allclose(edgekit.load(bundle).predict(rows), expected, atol=1e-5)


# --- what cannot be exported, and mistakes in the description --------------------------------------


def test_an_untraceable_module_fails_with_every_exporters_reason(tmp_path: Path) -> None:
    with pytest.raises(CheckFailed) as info:
        edgekit.export(m.PythonValues(), torch.randn(2, 3), tmp_path / "b",
                       dynamic_axes={"input.0": {0: "batch"}, "output": {0: "batch"}})  # fmt: skip
    message = str(info.value)
    assert "no bundle written" in message
    assert all(f"[{e}]" in message for e in ("dynamo", "torchscript", "script"))
    assert not (tmp_path / "b").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dynamic_axes": {"tokenz": {0: "batch"}}}, "neither inputs ['tokens', 'h', 'c']"),
        (
            {"output_names": ["logits"]},
            "1 output names for 3 outputs (flattened, in this order: output.0, output.1, output.2)",
        ),
        ({"state_pairs": [("h", "h_next")]}, "the second an output"),
        ({"axes": {"seq": {"role": "time"}}}, "axes ['seq'] are not dynamic axes"),
        ({"axes": {"time": {"role": "sideways"}}}, "role 'sideways'"),
        ({"int_ranges": {"h": (0, 3)}}, "not integer inputs"),
        ({"task": "translate"}, "unknown task 'translate'"),
        ({"dynamic_axes": {"tokens": {5: "batch"}}}, "axis 5 is not an axis of shape [2, 3]"),
        (
            {
                "dynamic_axes": {"tokens": {0: "batch", 1: "sequence"}},
                "state_pairs": [("h", "output.1"), ("c", "output.2")],
            },
            "needs a time axis on its tokens, logits and state; "
            "declare it: axes={'sequence': {'role': 'time'}}",
        ),
    ],
)
def test_mistakes_in_the_description_are_one_clear_error(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    z = torch.zeros(2, 2, m.H)
    base = {"input_names": ["tokens", "h", "c"],
            "dynamic_axes": {"tokens": {0: "batch", 1: "time"}}}  # fmt: skip
    with pytest.raises(InputError) as info:
        edgekit.export(m.LSTMLM(), (torch.zeros(2, 3, dtype=torch.long), z, z), tmp_path / "b",
                       **(base | kwargs))  # fmt: skip
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "b").exists()


# --- from the command line -------------------------------------------------------------------------

FACTORY = """
import torch
from torch import nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8, padding_idx=0)
        self.rnn = nn.GRU(8, 8, batch_first=True, bidirectional=True)
        self.head = nn.Linear(16, 2)

    def forward(self, ids):
        y, _ = self.rnn(self.embed(ids))
        return self.head(y.mean(1))


def make():
    torch.manual_seed(0)
    return {
        "module": Tagger(),
        "example_inputs": torch.tensor([[3, 4, 5], [6, 7, 8]]),
        "input_names": ["ids"],
        "output_names": ["logits"],
        "dynamic_axes": {"ids": {0: "batch", 1: "time"}, "logits": {0: "batch"}},
        "task": "classify",
        "labels": ["ham", "spam"],
        "vocab": ["<pad>", "<unk>"] + [f"w{i}" for i in range(48)],
    }
"""


def _cli(*args: Any) -> Any:
    from typer.testing import CliRunner

    from edgekit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_export_a_module_from_the_command_line_and_classify_text(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = tmp_path / "mine.py"
    source.write_text(FACTORY)
    out = tmp_path / "bundle"
    done = _cli("export", "--module", f"{source}:make", "--out", out)
    assert done.exit_code == 0, done.output
    assert "exporter: dynamo" in done.output and f"bundle: {out}" in done.output

    # --weights: a differently seeded copy of the weights decides the answers
    namespace: dict[str, Any] = {}
    exec(compile(FACTORY, str(source), "exec"), namespace)
    torch.manual_seed(123)
    other = namespace["Tagger"]().eval()
    save_file(other.state_dict(), str(tmp_path / "w.safetensors"))
    weighted = tmp_path / "weighted"
    done = _cli("export", "--module", f"{source}:make", "--weights", tmp_path / "w.safetensors",
                "--out", weighted)  # fmt: skip
    assert done.exit_code == 0, done.output
    ids = torch.tensor([[2 + int(w[1:]) for w in ["w1", "w7", "w3"]]])
    with torch.no_grad():
        want = _softmax(other(ids).numpy())[0]
    result = _cli(
        "classify", weighted, "--text", "w1 w7 w3", "--text", "w2", "--top-k", 2, "--json"
    )
    assert result.exit_code == 0, result.output
    rows = {r["text"]: dict(r["top_k"]) for r in __import__("json").loads(result.stdout)}
    assert rows["w1 w7 w3"]["spam"] == pytest.approx(float(want[1]), abs=1e-5)
    assert set(rows) == {"w1 w7 w3", "w2"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--module", "nofile.py:make"], "is not a Python file"),
        (["--module", "{src}"], "takes FILE.py:FACTORY"),
        (
            ["--module", "{src}:build"],
            "defines no function 'build' (it defines: ['Tagger', 'make'])",
        ),
        (["--module", "{src}:make", "--weights", "{tmp}/nope.safetensors"], "--weights not found"),
        (["--module", "{src}:make", "--weights", "{src}"], "is not a safetensors file"),
        (["--weights", "{src}", "{tmp}"], "--weights goes with --module"),
        ([], "give a checkpoint directory or --module"),
    ],
)
def test_module_export_mistakes_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    source = tmp_path / "mine.py"
    source.write_text(FACTORY)
    filled = [a.format(src=source, tmp=tmp_path) for a in args]
    result = _cli("export", *filled, "--out", tmp_path / "b")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert message in result.output
    assert not (tmp_path / "b").exists()


def test_a_module_that_fails_at_the_minimum_size_says_to_declare_it(tmp_path: Path) -> None:
    """Undeclared, the conv net's length axis is checked at 1, where torch itself fails."""
    with pytest.raises(InputError) as info:
        edgekit.export(
            m.AudioConvNet(), torch.randn(2, 1, 16), tmp_path / "b",
            dynamic_axes={"input.0": {0: "batch", 2: "samples"}, "output": {0: "batch"}},
        )  # fmt: skip
    message = str(info.value)
    assert "the module itself fails at samples=1" in message
    assert "axes={'samples': {'min': N}}" in message
