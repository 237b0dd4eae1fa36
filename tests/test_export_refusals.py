"""A refused export is a few lines: per exporter its most informative line, then the likely cause and
the fix; the full text goes to the file the refusal names. And a Python loop over nn.GRUCell (or
nn.RNNCell) exports as the nn.LSTMCell loop does, through the `script` exporter, with parity.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import edgekit
from edgekit.errors import CheckFailed, ExportRefused
from edgekit.exporters.causes import GENERIC, KNOWN_CAUSES, advice, known_cause
from edgekit.exporters.cells import plain_cells
from edgekit.exporters.refusal import MAX_CHARS, MAX_LINES, short_reason
from tests.user_modules import models as m
from tests.user_modules.cell_loops import GRUCellLoopLM, RNNCellLoopLM
from tests.user_modules.spectrogram import FACTORY, PhaseShift, Spectrogram

MAX_REFUSAL_LINES = 12  # head, 3 exporters x 3 lines, the file, not-tried, cause, fix: at most 15
IR = re.compile(r"Torch IR graph|^\s*%\w+ : |graph\(%", re.M)


def _refusal(module: torch.nn.Module, out: Path, **kwargs: Any) -> ExportRefused:
    with pytest.raises(ExportRefused) as info:
        edgekit.export(module, torch.randn(2, 400), out, **kwargs)
    assert isinstance(info.value, CheckFailed) and info.value.exit_code == 1
    return info.value


def _blocks(message: str) -> dict[str, list[str]]:
    """Each exporter's lines: its `[name] ...` line and the indented lines after it."""
    blocks: dict[str, list[str]] = {}
    name = None
    for line in message.splitlines():
        found = re.match(r"\[(\w+)\] ", line)
        name = found.group(1) if found else (name if line.startswith("  ") else None)
        if name:
            blocks.setdefault(name, []).append(line)
    return blocks


def _check_short(error: ExportRefused, exporters: list[str]) -> list[str]:
    message = str(error)
    lines = message.splitlines()
    assert len(lines) <= MAX_REFUSAL_LINES, message
    assert lines[0].endswith("no bundle written") and not IR.search(message), message
    blocks = _blocks(message)
    assert sorted(blocks) == sorted(exporters), message
    for block in blocks.values():  # the prefix "[name] export failed: " is counted too
        assert len(block) <= MAX_LINES and sum(len(b) for b in block) <= MAX_CHARS + 8, block
    assert lines[-2].startswith("likely cause: ") and lines[-1].startswith("fix: "), message
    return lines


@pytest.mark.parametrize("exporter", ["torchscript", "script"])
def test_stft_refusal_is_short_and_names_complex_numbers_and_the_fix(
    tmp_path: Path, exporter: str, capfd: pytest.CaptureFixture[str]
) -> None:
    error = _refusal(Spectrogram(), tmp_path / "b", exporter=exporter)
    lines = _check_short(error, [exporter])
    assert "STFT does not currently support complex types" in lines[1]
    assert "complex numbers" in lines[-2] and "ONNX has no complex type" in lines[-2]
    assert "outside the model" in lines[-1] and "return_complex=False" in lines[-1]
    assert any(line.startswith("not tried yet: --exporter") for line in lines)
    # the full text: where the refusal says, with torch's own IR dump, kept off the console
    assert error.details is not None and f"full exporter output: {error.details}" in lines
    full = error.details.read_text()
    assert "Torch IR graph at exception" in full and "aten::stft" in full
    assert "STFT does not currently support complex types" in full and lines[-1] in full
    error.details.unlink()
    printed = capfd.readouterr()
    assert "Torch IR graph" not in printed.out + printed.err
    assert not (tmp_path / "b").exists() and list(tmp_path.iterdir()) == []


def test_complex_arithmetic_refused_by_every_exporter_in_a_few_lines(tmp_path: Path) -> None:
    error = _refusal(PhaseShift(), tmp_path / "b")
    lines = _check_short(error, ["dynamo", "torchscript", "script"])
    assert "complex" in str(error).split("likely cause")[0]  # each reason names it
    assert "complex numbers" in lines[-2] and "return_complex=False" in lines[-1]
    assert not any(line.startswith("not tried yet") for line in lines)
    assert error.details is not None
    assert "No decompositions registered for the complex-valued input" in error.details.read_text()
    error.details.unlink()


def test_the_command_line_prints_one_error_block_ending_with_the_fix(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    source = tmp_path / "front.py"
    source.write_text(FACTORY)
    out = tmp_path / "b"
    result = CliRunner().invoke(
        app,
        ["export", "--module", f"{source}:make", "--exporter", "torchscript", "--out", str(out)],
    )
    assert result.exit_code == 1, result.output  # a refused export is a failed check, as before
    lines = result.output.strip().splitlines()
    assert lines[0] == "error: export failed; no bundle written", result.output
    assert sum(line.startswith("error:") for line in lines) == 1
    assert len(lines) <= MAX_REFUSAL_LINES and "Traceback" not in result.output
    assert lines[-2].startswith("likely cause: the module computes on complex numbers")
    assert lines[-1].startswith("fix: compute the STFT outside the model")
    path = next(line.split(": ", 1)[1] for line in lines if line.startswith("full exporter"))
    assert "STFT does not currently support complex types" in Path(path).read_text()
    Path(path).unlink()
    assert not out.exists()


# --- the short reason and the table of known causes, on the exporters' own messages --------------


def test_short_reason_keeps_the_innermost_meaningful_line_and_the_users_line() -> None:
    inner = RuntimeError(
        "No ONNX function found for <OpOverload(op='aten.mul', overload='Scalar')>"
    )
    outer = ValueError(
        "Failed to convert the exported program to an ONNX model. Next steps:\n"
        "- If there is a missing ONNX function, implement it\n## Exception summary\n"
        + "\n".join(f"  %{i} : Float(2, 3) = aten::mul(%x, %y)" for i in range(80))
        + '\nThe following call raised this error:\n  File "/home/me/front.py", line 12, in '
        "forward\n    return (spec * 1j).real\n"
    )
    outer.__cause__ = inner
    reason = short_reason(outer)
    assert reason.splitlines()[0].startswith("RuntimeError: No ONNX function found for")
    assert reason.splitlines()[1] == "  at /home/me/front.py:12: return (spec * 1j).real"
    assert len(reason) <= MAX_CHARS and len(reason.splitlines()) <= MAX_LINES
    long = short_reason(RuntimeError("x" * 5000 + "\n" + "y" * 5000))
    assert len(long) == MAX_CHARS and long.endswith("...")


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        ("STFT does not currently support complex types", "complex numbers"),
        ("Unknown number type: complex", "complex numbers"),
        (
            "Exporting the operator 'aten::linalg_eigh' to ONNX opset version 17 is not supported",
            "no ONNX translation: aten::linalg_eigh",
        ),
        ("No ONNX function found for <OpOverload(op='aten._fft_r2c', ", "aten._fft_r2c"),
        ("Could not guard on data-dependent expression Eq(u0, 1)", "reads values out of"),
        ("Expected type hint for result of tolist():", "reads values out of"),
        ("Constraints violated (batch)! The values of batch must always be equal to 2", "axis"),
    ],
)
def test_known_causes_match_the_exporters_messages(message: str, cause: str) -> None:
    found = known_cause([f"SomeError: {message}"])
    assert found is not None and cause in found[0] and found[1]


def test_every_refusal_ends_with_a_cause_and_a_fix() -> None:
    assert known_cause(["KeyError: 'weight'"]) is None
    unknown = advice([{"exporter": "dynamo", "passed": False, "error": "KeyError"}], ["dynamo"])
    assert unknown[-2:] == [f"likely cause: {GENERIC[0]}", f"fix: {GENERIC[1]}"]
    assert unknown[0] == "not tried yet: --exporter torchscript / script"
    assert {k.name for k in KNOWN_CAUSES} == {
        "complex numbers", "unsupported operator", "data-dependent control flow", "dynamic shapes"
    }  # fmt: skip
    values = advice([{"exporter": "dynamo", "passed": False, "parity_failures": ["x: 1"]}], [])
    assert values[-2].startswith("likely cause: the graphs run, but their values differ")


# --- a Python loop over nn.GRUCell exports as the nn.LSTMCell loop does ----------------------------

STEPS = 40


def _export_cell_loop(module: torch.nn.Module, out: Path, steps: int) -> tuple[Path, dict]:
    z = torch.zeros(2, m.H)
    bundle, manifest = edgekit.export(
        module, (torch.zeros(2, 3, dtype=torch.long), z), out,
        input_names=["tokens", "h"], output_names=["logits", "h_out"],
        dynamic_axes={"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"},
                      "h": {0: "batch"}, "h_out": {0: "batch"}},
        state_pairs=[("h", "h_out")], task="generate", vocab=m.CHARS, steps=steps,
    )  # fmt: skip
    return bundle, manifest


def _torch_greedy(module: torch.nn.Module, prompt: str, n: int) -> str:
    with torch.no_grad():
        logits, h = module(torch.tensor([[m.CHARS.index(c) for c in prompt]]), torch.zeros(1, m.H))
        text = ""
        for _ in range(n):
            token = int(logits[0, -1].argmax())
            text += m.CHARS[token]
            logits, h = module(torch.tensor([[token]]), h)
    return text


def test_gru_cell_loop_exports_like_the_lstm_cell_loop(tmp_path: Path) -> None:
    torch.manual_seed(13)
    module = GRUCellLoopLM()
    bundle, manifest = _export_cell_loop(module, tmp_path / "b", STEPS)
    attempts = manifest["exporter"]["attempts"]
    assert manifest["exporter"]["name"] == "script"  # as for models.CellLoopLM (nn.LSTMCell)
    assert [a["exporter"] for a in attempts] == ["torchscript", "dynamo", "script"]
    assert [a["passed"] for a in attempts] == [False, False, True]  # tracing unrolled the loop
    parity = manifest["parity"]
    assert parity["passed"] and parity["rollout"]["first_token_mismatch"] is None
    assert {c["case"] for c in parity["cases"]} >= {"other shape B=1 T=1", "other shape B=5 T=37"}
    assert manifest["state"][0]["batch_axis"] == 0

    g = edgekit.load(bundle)  # a short rollout, torch-free, against the torch module
    prompts = ["abc", "j. a"]
    expected = [_torch_greedy(module, p, STEPS) for p in prompts]
    assert [g.generate(p, STEPS, temperature=0) for p in prompts] == expected
    assert g.generate_batch(prompts, STEPS, temperature=0) == expected
    ids = np.random.default_rng(0).integers(0, m.V, size=(3, 11))
    h = np.random.default_rng(1).standard_normal((3, m.H)).astype(np.float32)
    got = g.backend.run({"tokens": ids, "h": h})
    with torch.no_grad():
        logits, h_out = module(torch.from_numpy(ids), torch.from_numpy(h))
    np.testing.assert_allclose(got["logits"], logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["h_out"], h_out.numpy(), atol=1e-5)


def test_rnn_cell_loop_without_biases_exports_through_script_too(tmp_path: Path) -> None:
    torch.manual_seed(14)
    module = RNNCellLoopLM()
    bundle, manifest = _export_cell_loop(module, tmp_path / "b", 10)
    assert manifest["exporter"]["name"] == "script" and manifest["parity"]["passed"]
    assert edgekit.load(bundle).generate("abc", 10, temperature=0) == _torch_greedy(
        module, "abc", 10
    )


# torch 2.13 deprecates torch.jit.script; the `script` exporter still relies on it
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    "cell",
    [
        nn.GRUCell(5, 4),
        nn.GRUCell(5, 4, bias=False),
        nn.RNNCell(5, 4),
        nn.RNNCell(5, 4, bias=False, nonlinearity="relu"),
    ],
    ids=["gru", "gru-no-bias", "rnn-tanh", "rnn-relu-no-bias"],
)
def test_plain_cells_compute_what_torchs_cells_do(cell: nn.Module) -> None:
    twin = nn.Sequential(cell)
    assert plain_cells(twin) == 1 and type(twin[0]) is not type(cell)
    scripted = torch.jit.script(twin[0])
    x, h = torch.randn(3, 5), torch.randn(3, 4)
    with torch.no_grad():
        for args in [(x, h), (x,), (x[0], h[0]), (x[0],)]:
            torch.testing.assert_close(scripted(*args), cell(*args), rtol=1e-6, atol=1e-6)
