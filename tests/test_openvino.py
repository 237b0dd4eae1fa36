"""The OpenVINO backend: the same bundle, contract and parity checks as ONNX Runtime."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import edgekit
from edgekit.errors import InputError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason="openvino is not installed (pip install 'edgekit-ml[openvino]'; the dev extra has it)",
)


@pytest.mark.parametrize("name", ["cnn", "linear", "lenet", "rowlstm"])
def test_same_outputs_and_golden_checks_as_onnxruntime(
    tiny_bundles: dict[str, Path], name: str
) -> None:
    ort = edgekit.load(tiny_bundles[name])
    ov = edgekit.load(tiny_bundles[name], device="openvino")
    assert ov.backend.name == "openvino"
    assert ov.check().passed  # the bundle's golden records, replayed on OpenVINO
    feeds = ort.backend.contract.example(3, 1, np.random.default_rng(0))
    want, got = ort.backend.run(feeds), ov.backend.run(feeds)
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-4)


def test_generation_matches_onnxruntime(tiny_bundles: dict[str, Path]) -> None:
    ort = edgekit.load(tiny_bundles["charlm"])
    ov = edgekit.load(tiny_bundles["charlm"], device="openvino", threads=1)
    assert ov.check().passed  # prefill, then steps on the static step graph
    assert ov.generate("the ", 80, temperature=0) == ort.generate("the ", 80, temperature=0)
    prompts = ["the ", "a", "of the"]
    assert ov.generate_batch(prompts, 40, temperature=0) == ort.generate_batch(
        prompts, 40, temperature=0
    )
    session = ov.session()
    session.feed("the ")
    saved = session.state
    first = "".join(session.step(0) for _ in range(10))
    session.state = saved  # explicit state: save, restore, continue the same way
    assert "".join(session.step(0) for _ in range(10)) == first


def test_step_buffers_are_shared_not_copied(tiny_bundles: dict[str, Path]) -> None:
    """Steps ping-pong between two bound buffer sets: each step writes the other set in place."""
    from edgekit.runtimes.openvino import OpenVinoStepper

    ov = edgekit.load(tiny_bundles["charlm"], device="openvino")
    stepper = OpenVinoStepper(ov.backend, 2)  # the explicit stepper (without make_stateful)
    stepper.prefill(np.zeros((2, 3), np.int64))
    before = [id(b) for s in stepper.buffers for b in s.values()]
    live = stepper.current
    stepper.next_tokens[:] = 1
    stepper.step()
    assert stepper.current == 1 - live
    assert [id(b) for s in stepper.buffers for b in s.values()] == before
    assert np.abs(stepper.buffers[stepper.current]["state_in.h"]).sum() > 0


def test_unloadable_graph_is_one_clear_error(tmp_path: Path, tiny_bundles: dict[str, Path]) -> None:
    from edgekit.runtimes.openvino import OpenVinoBackend

    ort = edgekit.load(tiny_bundles["linear"])
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(InputError, match="OpenVINO cannot load"):
        OpenVinoBackend(bad, ort.backend.contract)


@pytest.mark.parametrize("cell", ["scratch-rnn", "gru"])
def test_every_cell_runs_and_a_rejected_sequence_graph_falls_back_to_the_step_graph(
    cell: str, tmp_path: Path
) -> None:
    """OpenVINO rejects the scripted Loop of hand-written cells: the step graph then serves every
    call, a prompt one token at a time, with the same golden checks and the same tokens."""
    from edgekit.exporters import bundle_from_checkpoint
    from tests.conftest import train_tiny

    ckpt = train_tiny("charlm", tmp_path / "ck", cell=cell, layers=2)
    bundle, _ = bundle_from_checkpoint(ckpt.path, tmp_path / "b", steps=10)  # type: ignore[attr-defined]
    ort, ov = edgekit.load(bundle), edgekit.load(bundle, device="openvino")
    assert ov.backend.stepwise == cell.startswith("scratch")
    assert ov.check().passed
    assert ov.generate("the ", 40, temperature=0) == ort.generate("the ", 40, temperature=0)
    prompts = ["the ", "a"]
    assert ov.generate_batch(prompts, 20, temperature=0) == ort.generate_batch(
        prompts, 20, temperature=0
    )


def test_steps_keep_the_state_inside_openvino_and_agree_with_explicit_buffers(
    tiny_bundles: dict[str, Path],
) -> None:
    """The default stepper is the stateful one (what OpenVINO by hand runs); it reads and writes
    the same state as the explicit two-buffer stepper, step for step."""
    from edgekit.runtimes.openvino import OpenVinoStepper
    from edgekit.runtimes.openvino_stateful import StatefulOpenVinoStepper

    backend = edgekit.load(tiny_bundles["charlm"], device="openvino", threads=1).backend
    stateful, explicit = backend.stepper(2), OpenVinoStepper(backend, 2)
    assert isinstance(stateful, StatefulOpenVinoStepper)
    prompt = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    for stepper in (stateful, explicit):
        stepper.prefill(prompt)
        for token in (7, 8, 9):
            stepper.next_tokens[:] = token
            stepper.step()
    for name, want in explicit.get_state().items():
        np.testing.assert_allclose(stateful.get_state()[name], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stateful.next_logits, explicit.next_logits, rtol=1e-5, atol=1e-5)
    saved = stateful.get_state()
    stateful.reset()
    assert all(np.abs(v).sum() == 0 for v in stateful.get_state().values())
    stateful.set_state(saved)
    stateful.next_tokens[:] = 1
    explicit.next_tokens[:] = 1
    np.testing.assert_allclose(stateful.step(), explicit.step(), rtol=1e-5, atol=1e-5)
