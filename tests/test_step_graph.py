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


def test_a_step_that_fits_in_one_cores_l2_runs_on_one_thread_unless_told_a_count(
    tiny_bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule reads the step graph's size against this machine's L2 (sysfs); prompts keep the
    default threads, and an explicit count sets every session."""
    from edgekit.runtimes import threads as rule
    from edgekit.runtimes.threads import ONE_THREAD_STREAMS

    step = tiny_bundles["charlm"] / sg.STEP_GRAPH
    size = step.stat().st_size

    def threads_with(l2: int | None, **load: object) -> tuple[int, int]:
        monkeypatch.setattr(rule, "l2_cache_bytes", lambda: l2)
        backend = edgekit.load(tiny_bundles["charlm"], step_graph=True, **load).backend  # type: ignore[arg-type]
        options = (
            backend.session.get_session_options(),
            backend.step_session.get_session_options(),
        )
        return options[0].intra_op_num_threads, options[1].intra_op_num_threads

    assert threads_with(size) == (0, 1)  # 0: ONNX Runtime's default; it fits exactly
    many = edgekit.load(tiny_bundles["charlm"], step_graph=True).backend  # still fits
    wide = many.stepper(ONE_THREAD_STREAMS + 1).step_session  # many streams: default threads
    assert wide.get_session_options().intra_op_num_threads == 0
    assert many.stepper(ONE_THREAD_STREAMS).step_session is many.step_session
    assert threads_with(size - 1) == (0, 0)  # one byte too big
    assert threads_with(None) == (0, 0)  # no L2 size reported: the default
    assert threads_with(size, threads=2) == (2, 2)
    monkeypatch.setattr(rule, "l2_cache_bytes", lambda: size)
    one = edgekit.load(tiny_bundles["charlm"], step_graph=True).generate("ab", 30, temperature=0)
    two = edgekit.load(tiny_bundles["charlm"], step_graph=True, threads=2)
    assert one == two.generate("ab", 30, temperature=0)
    prompts = ["ab", "ba"] * ONE_THREAD_STREAMS  # more streams than one thread serves
    many_texts = edgekit.load(tiny_bundles["charlm"], step_graph=True).generate_batch(
        prompts, 20, temperature=0
    )
    assert many_texts == two.generate_batch(prompts, 20, temperature=0)


def test_the_l2_size_is_read_from_sysfs() -> None:
    from edgekit.machine import l2_cache_bytes

    caches = Path("/sys/devices/system/cpu/cpu0/cache")
    levels = (
        [(i / "level").read_text().strip() for i in caches.glob("index*")]
        if caches.exists()
        else []
    )
    if "2" not in levels:
        pytest.skip("this OS reports no L2 cache in /sys/devices/system/cpu/cpu0/cache")
    l2 = l2_cache_bytes()
    assert l2 is not None and 64 * 1024 <= l2 <= 1 << 30  # 64 KiB .. 1 GiB: a real L2
