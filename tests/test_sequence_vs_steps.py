"""A recurrent module whose T-token call is not its T one-token steps (its step pinned, the way an
adapter pins transformers' Mamba2 to its one-token path) exports and checks clean at every T, yet
its prompts would come out wrong. Export asks torch first: with `--exporter auto` it exports the
step alone and records why; with a named exporter it refuses in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import edgekit
from edgekit.errors import InputError

CHARS = list("abcdefgh .")
H = 16


class PinnedStep(nn.Module):
    """tokens (B, T), h (B, H) -> logits (B, T, V), h (B, H). Right at T = 1 only: a longer call
    updates the state once from the mean of its inputs, where T steps would update it T times."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(CHARS), H)
        self.cell = nn.Linear(2 * H, H)
        self.head = nn.Linear(H, len(CHARS))

    def forward(self, tokens, h):
        x = self.embed(tokens).mean(dim=1)  # (B, H): the one token's embedding at T = 1
        h = torch.tanh(self.cell(torch.cat([x, h], dim=-1)))
        logits = self.head(h)[:, None, :].expand(-1, tokens.shape[1], -1)
        return logits * 4, h


class Faithful(PinnedStep):
    """A tanh RNN over every token: its T-token call is its T steps."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(H, H, batch_first=True)

    def forward(self, tokens, h):
        y, h = self.rnn(self.embed(tokens), h[None])  # y (B, T, H), h (1, B, H)
        return self.head(y) * 4, h[0]


def declared(**extra) -> dict:
    return dict(
        input_names=["tokens", "h"], output_names=["logits", "h_out"],
        dynamic_axes={"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"},
                      "h": {0: "batch"}, "h_out": {0: "batch"}},
        state_pairs=[("h", "h_out")], task="generate", vocab=CHARS, **extra,
    )  # fmt: skip


def example() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, H)


def stepped_greedy(module: nn.Module, prompt: str, steps: int) -> str:
    """Torch fed one token per call, prompt included: the module's own recurrence."""
    h, out = torch.zeros(1, H), []
    with torch.no_grad():
        for c in prompt:
            logits, h = module(torch.tensor([[CHARS.index(c)]]), h)
        for _ in range(steps):
            token = int(logits[0, -1].argmax())
            out.append(CHARS[token])
            logits, h = module(torch.tensor([[token]]), h)
    return "".join(out)


def test_auto_exports_the_step_alone_and_says_why(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = PinnedStep().eval()
    bundle, manifest = edgekit.export(module, example(), tmp_path / "pinned", **declared())
    why = manifest["exporter"]["step_only_why"]
    assert "3-token call" not in why and "is not 16 one-token calls: logits differs" in why, why
    assert next(a for a in manifest["axes"] if a["role"] == "time")["max"] == 1
    want = stepped_greedy(module, "abc", 60)
    assert len(set(want)) > 2
    g = edgekit.load(bundle)
    assert g.generate("abc", 60, temperature=0) == want
    assert g.generate_batch(["abc", "bca"], 60, temperature=0)[0] == want
    assert g.check().passed
    from typer.testing import CliRunner

    from edgekit.cli import app

    info = CliRunner().invoke(app, ["info", str(bundle)])
    assert "step-only: one token per call" in info.output and "one-token calls" in info.output


def test_a_named_exporter_refuses_in_one_line(tmp_path: Path) -> None:
    torch.manual_seed(0)
    with pytest.raises(InputError) as refused:
        edgekit.export(PinnedStep().eval(), example(), tmp_path / "pinned",
                       exporter="torchscript", **declared())  # fmt: skip
    line = str(refused.value)
    assert "\n" not in line and "step_only=True (--step-only)" in line, line
    assert not (tmp_path / "pinned").exists()


def test_a_faithful_module_keeps_its_sequence_graph(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Faithful().eval()
    bundle, manifest = edgekit.export(module, example(), tmp_path / "faithful", **declared())
    assert "step_only_why" not in manifest["exporter"]
    assert next(a for a in manifest["axes"] if a["role"] == "time").get("max") is None
    assert edgekit.load(bundle).generate("abc", 40, temperature=0) == stepped_greedy(
        module, "abc", 40
    )


def test_a_tight_tolerance_does_not_read_reordering_noise_as_a_difference(tmp_path: Path) -> None:
    from edgekit.exporters.module_io import Declarations
    from edgekit.exporters.plan import plan_from_module
    from edgekit.exporters.recurrence import sequence_is_not_steps

    torch.manual_seed(0)
    plan = plan_from_module(Faithful().eval(), example(), Declarations(**declared()))
    assert sequence_is_not_steps(plan, atol=1e-9, rtol=0.0) is None
    torch.manual_seed(0)
    pinned = plan_from_module(PinnedStep().eval(), example(), Declarations(**declared()))
    assert "is not 16 one-token calls" in (sequence_is_not_steps(pinned, 1e-9, 0.0) or "")
