"""The smaller edges a new user meets after the README: which extra a missing module comes from,
a bundle of a newer format shown rather than refused by `info`, bench's duration on a busy machine,
and the server's log."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekit.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("module", "extra"),
    [("uvicorn", "serve"), ("starlette", "serve"), ("onnx", "quantize"), ("torch", "train"),
     ("openvino", "openvino"), ("matplotlib", "plot")],
)  # fmt: skip
def test_a_missing_module_names_the_extra_that_installs_it_alone(module: str, extra: str) -> None:
    import tomllib

    from edgekit._optional import extra_for

    assert extra_for(module) == extra
    extras = tomllib.loads(Path("pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.split(">")[0].split("=")[0] == module for dep in extras[extra]) or (
        module == "onnx" and "onnx>=1.17" in extras["quantize"]
    )


def test_info_shows_a_newer_bundle_and_what_it_needs(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "newer"
    shutil.copytree(tiny_bundles["linear"], bundle)
    doc = json.loads((bundle / "edgekit.json").read_text())
    doc["schema_version"], doc["versions"]["edgekit"] = 99, "9.0.0"
    (bundle / "edgekit.json").write_text(json.dumps(doc))
    result = runner.invoke(app, ["info", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "schema v99" in result.stdout and "pip install -U 'edgekit-ml>=9.0.0'" in result.stdout
    assert json.loads(runner.invoke(app, ["info", str(bundle), "--json"]).stdout) == doc
    refused = runner.invoke(app, ["check", str(bundle)])  # loading it is still refused
    assert refused.exit_code == 2 and "newer than this edgekit reads" in refused.output


def test_a_duration_too_short_for_the_minimum_samples_runs_over_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from edgekit.bench.cases import Case
    from edgekit.bench.runner import MIN_SAMPLES, Budget, plan_iterations
    from edgekit.errors import InputError

    case = Case("ort-cpu", "batch 1", 1, 1, lambda: None)
    budget = Budget(warmup=2, iters=None, duration_s=0.05)
    # a busy machine, as the bench sees it: 10 ms a call, so the duration holds 5 calls
    with caplog.at_level(logging.WARNING, logger="edgekit.bench"):
        assert plan_iterations(case, 0.01, budget) == MIN_SAMPLES
    assert any("timing the minimum" in r.getMessage() for r in caplog.records)
    assert plan_iterations(case, 0.001, budget) == 50  # room enough: the duration decides
    with pytest.raises(InputError, match="collects only 0 samples"):  # shorter than one call
        plan_iterations(case, 0.1, budget)


def test_the_servers_log_at_info_tells_evictions_and_refusals(
    tiny_bundles: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from edgekit.runtimes.loader import load
    from edgekit.serve.batching import Batcher
    from edgekit.serve.sequences import SequencesFull, SequenceStore

    backend = load(tiny_bundles["charlm"]).backend
    store = SequenceStore(backend, 1, 0.5, Batcher(backend, 8, 0.0, ThreadPoolExecutor(1)))

    async def drive() -> None:
        tokens = {"tokens": np.zeros((1, 1), np.int64)}
        await store.infer(tokens, {"sequence_id": 1, "sequence_start": True})
        with pytest.raises(SequencesFull):
            await store.infer(tokens, {"sequence_id": 2, "sequence_start": True})
        await asyncio.sleep(0.6)
        store.evict_idle()

    with caplog.at_level(logging.INFO, logger="edgekit.serve"):
        asyncio.run(drive())
    messages = [r.getMessage() for r in caplog.records]
    assert any("refused" in m for m in messages) and any("evicted 1" in m for m in messages)


def test_a_recurrent_module_without_a_shared_time_axis_is_told_what_it_is(tmp_path: Path) -> None:
    import torch
    from torch import nn

    import edgekit
    from edgekit.errors import InputError

    class Encoder(nn.Module):  # reads a whole source, returns one prediction: no step over time
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.gru, self.head = nn.Embedding(10, 8), nn.GRU(8, 8), nn.Linear(8, 10)

        def forward(self, src: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y, h = self.gru(self.embed(src).transpose(0, 1), h)
            return self.head(y[-1]), h

    with pytest.raises(InputError) as refused:
        edgekit.export(
            Encoder(), (torch.zeros(2, 5, dtype=torch.long), torch.zeros(1, 2, 8)), tmp_path / "b",
            input_names=["tokens", "h"], output_names=["logits", "h_out"],
            dynamic_axes={"tokens": {0: "batch", 1: "src"}, "h": {1: "batch"},
                          "logits": {0: "batch"}, "h_out": {1: "batch"}},
            state_pairs=[("h", "h_out")], task="generate", vocab=list("abcdefghij"),
        )  # fmt: skip
    message = str(refused.value)
    assert "that its tokens and logits share" in message and "sequence-to-sequence" in message
    assert "'role': 'time'" not in message  # no advice that leads to a second refusal


def test_bench_help_names_every_backend_of_the_registry() -> None:
    import edgekit.reference  # noqa: F401  (registers the torch backends)
    from edgekit.runtimes import registry

    text = " ".join(runner.invoke(app, ["bench", "--help"], terminal_width=200).output.split())
    assert all(name in text for name in registry.names()), text
