"""The one-token step graph: the same function as the sequence graph at T = 1, for every cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgekit
from edgekit.exporters import step_graph as sg
from edgekit.exporters.plan import plan_from_checkpoint
from edgekit.manifest import read_manifest
from edgekit.reference.torch_backend import TorchBackend
from edgekit.runtimes.onnxruntime import OrtBackend
from tests.conftest import train_tiny


def _greedy(backend: OrtBackend, prompt: list[int], n: int) -> list[int]:
    stepper = backend.stepper(1)
    logits = stepper.prefill(np.array([prompt], np.int64))
    out = []
    for _ in range(n):
        token = int(logits[0].argmax())
        out.append(token)
        stepper.next_tokens[0] = token
        logits = stepper.step()
    return out


@pytest.mark.parametrize(
    ("cell", "embed"),
    [("lstm", 0), ("gru", 0), ("rnn", 0), ("scratch-lstm", 0), ("scratch-rnn", 0), ("gru", 8)],
)
def test_the_step_graph_computes_what_torch_does(cell: str, embed: int, tmp_path: Path) -> None:
    """Two layers (the [x, h] product of layer 2 too), one-hot and embedded inputs."""
    ckpt = train_tiny("charlm", tmp_path / "ck", cell=cell, layers=2, embed=embed)
    plan = plan_from_checkpoint(ckpt.path)  # type: ignore[attr-defined]
    path = tmp_path / "step.onnx"
    sg.export_step_graph(plan.module.lm, plan.contract, path)
    step = OrtBackend(path, plan.contract)
    reference = TorchBackend(plan.module, plan.contract)
    assert sg.check_step_graph(reference, step, plan.contract, 1e-4, 1e-3, 30) == []
    # the runtime: prefill on the sequence graph, steps on the step graph, one state between them
    import torch

    from edgekit.exporters.onnx import onnx_from_module

    sequence = tmp_path / "model.onnx"
    feeds = plan.contract.feeds(plan.contract.sizes(), np.random.default_rng(0))
    example = tuple(torch.from_numpy(v) for v in feeds.values())
    onnx_from_module(plan.module, example, plan.contract, sequence, "torchscript", None)
    both = OrtBackend(sequence, plan.contract, step_graph=path)
    alone = OrtBackend(sequence, plan.contract)
    assert both.step_session is not None
    assert _greedy(both, [1, 2, 3], 40) == _greedy(alone, [1, 2, 3], 40)


def test_a_wrong_step_graph_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gates in the wrong order (a real bug class) are caught and the bundle steps as before."""
    ckpt = train_tiny("charlm", tmp_path / "ck", cell="lstm", layers=1)
    swapped = sg._ifog

    def wrong_order(weights: tuple, h: int) -> tuple:
        return tuple(w[sg._gate_rows(h, (1, 0, 2, 3))] for w in swapped(weights, h))

    monkeypatch.setattr(sg, "_ifog", wrong_order)
    bundle, manifest = edgekit.exporters.bundle_from_checkpoint(ckpt.path, tmp_path / "b", steps=5)  # type: ignore[attr-defined]
    record = manifest["step_graph"]
    assert record["used"] is False and "max abs" in record["why"]
    assert not (bundle / sg.STEP_GRAPH).exists()
    assert edgekit.load(bundle).backend.step_session is None


def test_export_records_the_step_graph_and_load_uses_it_when_faster(
    tiny_bundles: dict[str, Path],
) -> None:
    manifest = read_manifest(tiny_bundles["charlm"])
    record = manifest["step_graph"]
    assert record["checked"].startswith("random states at batch 1 and 3")
    assert record["speed"]["sequence_us"] > 0 and record["speed"]["step_us"] > 0
    assert record["used"] == sg.step_graph_pays(record["speed"])
    assert sg.STEP_GRAPH in manifest["files"]  # kept either way: quantize derives from it
    generator = edgekit.load(tiny_bundles["charlm"])
    assert (generator.backend.step_session is not None) == record["used"]
    plain = edgekit.load(tiny_bundles["charlm"], step_graph=False)
    assert plain.backend.step_session is None
    text = generator.generate("ab", 30, temperature=0)
    assert text == plain.generate("ab", 30, temperature=0)
    assert "step_graph" not in read_manifest(tiny_bundles["lenet"])
    from typer.testing import CliRunner

    from edgekit.cli import app

    info = CliRunner().invoke(app, ["info", str(tiny_bundles["charlm"])])
    assert "step graph model.step.onnx: " in info.output


def test_the_choice_is_a_rule_on_an_interval_and_load_overrides_it_both_ways(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    import json
    import shutil

    assert sg.step_graph_pays({"ci95": [0.97, 1.04]})  # a near tie stays on the step graph
    assert sg.step_graph_pays({"ci95": [1.0, 1.2]})
    assert not sg.step_graph_pays({"ci95": [1.08, 1.2]})  # clearly slower
    copy = tmp_path / "charlm"
    shutil.copytree(tiny_bundles["charlm"], copy)
    doc = json.loads((copy / "edgekit.json").read_text())
    doc["step_graph"]["used"] = False  # as if export had found it clearly slower
    (copy / "edgekit.json").write_text(json.dumps(doc))
    assert edgekit.load(copy).backend.step_session is None
    forced = edgekit.load(copy, step_graph=True)
    assert forced.backend.step_session is not None
    assert forced.generate("ab", 30, temperature=0) == edgekit.load(copy).generate(
        "ab", 30, temperature=0
    )


def test_paired_ratio_sees_a_twice_as_slow_call() -> None:
    import time

    from edgekit.timing import paired_ratio

    def spin(us: float):
        def call() -> None:
            end = time.perf_counter() + us / 1e6
            while time.perf_counter() < end:
                pass

        return call

    paired = paired_ratio(spin(200), spin(100), rounds=9, seconds=0.5, warmup=2)
    low, high = paired["ci95"]
    assert 1.5 < low <= paired["ratio"] <= high < 2.5, paired


def test_steps_run_on_the_threads_export_measured_unless_told_a_count(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Export times a step on one thread against ONNX Runtime's default and records the choice
    with its evidence; load steps on it, prompts keep the default, an explicit count wins."""
    import json
    import shutil

    from edgekit.iospec import IOContract

    manifest = read_manifest(tiny_bundles["charlm"])
    record = manifest["step_graph"]
    if record["used"]:  # measured only for a step graph steps run on
        assert record["threads"] == (1 if sg.clearly_faster(record["threads_speed"]) else None)
    step = tiny_bundles["charlm"] / sg.STEP_GRAPH
    chosen = sg.step_threads(step, IOContract.from_manifest(manifest), seconds=0.3)
    speed = chosen["threads_speed"]
    assert speed["one_thread_us"] > 0 and speed["default_us"] > 0 and speed["rounds"] == 15
    assert chosen["threads"] == (1 if float(speed["ci95"][1]) < 1.0 else None)
    copy = tmp_path / "charlm"
    shutil.copytree(tiny_bundles["charlm"], copy)

    def threads_with(chosen: int | None, **load: object) -> tuple[int, int]:
        doc = json.loads((copy / "edgekit.json").read_text())
        doc["step_graph"] = {**doc["step_graph"], "used": True, "threads": chosen}
        (copy / "edgekit.json").write_text(json.dumps(doc))
        backend = edgekit.load(copy, **load).backend  # type: ignore[arg-type]
        options = (
            backend.session.get_session_options(),
            backend.step_session.get_session_options(),
        )
        return options[0].intra_op_num_threads, options[1].intra_op_num_threads

    assert threads_with(1) == (0, 1)  # 0: ONNX Runtime's default
    assert threads_with(None) == (0, 0)
    assert threads_with(1, threads=2) == (2, 2)
    one = edgekit.load(copy).generate("ab", 30, temperature=0)
    assert one == edgekit.load(copy, threads=2).generate("ab", 30, temperature=0)


def test_a_variants_step_threads_reach_its_step_graph(tiny_bundles: dict[str, Path]) -> None:
    from edgekit.bundle.manifest import Manifest

    base = read_manifest(tiny_bundles["charlm"])
    variant = {"precision": "int8", "file": "model.int8.onnx", "step_file": "model.step.int8.onnx",
               "tolerance": base["tolerance"]}  # fmt: skip
    for chosen in (1, None):
        hashed = {"sha256": "0" * 64, "bytes": 1}
        files = {**base["files"], **{variant[k]: hashed for k in ("file", "step_file")}}
        doc = {**base, "files": files, "variants": [{**variant, "step_threads": chosen}]}
        step = Manifest.from_json(doc).at("int8").step_graph
        assert step is not None and step.file == "model.step.int8.onnx" and step.threads == chosen
