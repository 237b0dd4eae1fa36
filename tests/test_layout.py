"""The Layout: one place that knows where batch and time sit, proved on a time-major recurrent model
whose state has batch on axis 0, run through the Generator with a plain numpy backend."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from edgekit.errors import InputError
from edgekit.iospec import IOContract, StatePair, TensorSpec
from edgekit.runtimes.base import Backend
from edgekit.runtimes.generator import Generator
from edgekit.runtimes.layout import Layout
from edgekit.runtimes.stepper import HostStepper

VOCAB = list("abcdef")


class TimeMajorRNN(Backend):
    """A one-layer tanh RNN in numpy: ids (T, B), h_in (B, H) -> scores (T, B, V), h_out (B, H)."""

    name = "numpy-rnn"

    def __init__(self, hidden: int = 8, seed: int = 0) -> None:
        v = len(VOCAB)
        super().__init__(
            IOContract(
                [
                    TensorSpec("ids", "int64", ("time", "batch")),
                    TensorSpec("h_in", "float32", ("batch", hidden)),
                ],
                [
                    TensorSpec("scores", "float32", ("time", "batch", v)),
                    TensorSpec("h_out", "float32", ("batch", hidden)),
                ],
                [StatePair("h_in", "h_out")],
                token_input="ids",
                vocab_size=v,
            )
        )
        rng = np.random.default_rng(seed)
        self.embed = rng.standard_normal((v, hidden)).astype(np.float32)
        self.w = (rng.standard_normal((hidden, hidden)) / hidden**0.5).astype(np.float32)
        self.out = rng.standard_normal((hidden, v)).astype(np.float32)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        h, scores = feeds["h_in"], []
        for ids in feeds["ids"]:  # (B,) per time step
            h = np.tanh(self.embed[ids] + h @ self.w)
            scores.append(h @ self.out)
        return {"scores": np.stack(scores).astype(np.float32), "h_out": h.astype(np.float32)}


def greedy_reference(model: TimeMajorRNN, prompt: str, steps: int) -> str:
    """Greedy decoding written directly against the model's weights, one row at a time."""
    h = np.zeros((1, model.w.shape[0]), np.float32)
    for ch in prompt:
        h = np.tanh(model.embed[[VOCAB.index(ch)]] + h @ model.w)
    text = ""
    for _ in range(steps):
        token = int((h @ model.out).argmax())
        text += VOCAB[token]
        h = np.tanh(model.embed[[token]] + h @ model.w)
    return text


def test_layout_reads_axes_from_the_contract() -> None:
    layout = TimeMajorRNN().layout
    assert layout.token_axes == (1, 0) and layout.logits_axes == (1, 0)
    assert [s.batch_axis for s in layout.state] == [0]
    assert layout.token_shape(3, 5) == (5, 3) and layout.logits_shape(3, 1) == (1, 3, 6)
    ids = np.arange(6).reshape(2, 3)  # (B, T)
    assert np.array_equal(layout.token_feed(ids), ids.T)


def test_last_logits_and_step_tokens_are_writable_views() -> None:
    layout = TimeMajorRNN().layout
    logits = np.zeros(layout.logits_shape(2, 1), np.float32)  # (T=1, B=2, V)
    view = layout.last_logits(logits)
    assert view.shape == (2, 6)
    view[1, 3] = 7.0
    assert logits[0, 1, 3] == 7.0
    tokens = np.zeros(layout.token_shape(2, 1), np.int64)
    layout.step_tokens(tokens)[:] = [4, 5]
    assert tokens.tolist() == [[4, 5]]


def test_take_and_put_rows_follow_each_states_batch_axis() -> None:
    contract = IOContract(
        [
            TensorSpec("tokens", "int64", ("batch", "time")),
            TensorSpec("a", "float32", (2, "batch", 3)),
            TensorSpec("b", "float32", ("batch", 3)),
        ],
        [TensorSpec("logits", "float32", ("batch", "time", 4))]
        + [TensorSpec(n, "float32", s) for n, s in (("a2", (2, "batch", 3)), ("b2", ("batch", 3)))],
        [StatePair("a", "a2"), StatePair("b", "b2")],
        token_input="tokens",
        vocab_size=4,
    )
    layout = Layout.of(contract)
    state = {"a": np.arange(24.0).reshape(2, 4, 3), "b": np.arange(12.0).reshape(4, 3)}
    part = layout.take_rows(state, [1, 3])
    assert np.array_equal(part["a"], state["a"][:, [1, 3]])
    assert np.array_equal(part["b"], state["b"][[1, 3]])
    layout.put_rows(state, [0, 2], {"a": -np.ones((2, 2, 3)), "b": -np.ones((2, 3))})
    assert (state["a"][:, [0, 2]] == -1).all() and (state["b"][[0, 2]] == -1).all()
    assert (state["a"][:, [1, 3]] >= 0).all()


def test_a_graph_without_batch_or_state_has_no_layout() -> None:
    contract = IOContract(
        [TensorSpec("x", "float32", ("batch", 3))], [TensorSpec("y", "float32", ("batch", 1))]
    )
    with pytest.raises(InputError, match="recurrent bundle"):
        Layout.of(contract)


def test_time_major_generation_equals_greedy_decoding() -> None:
    model = TimeMajorRNN()
    generator = Generator(model, {"vocab": VOCAB})
    prompts = ["abc", "fed", "a", "bcdef"]
    expected = [greedy_reference(model, p, 40) for p in prompts]
    assert [generator.generate(p, 40, temperature=0) for p in prompts] == expected
    assert generator.generate_batch(prompts, 40, temperature=0) == expected


def test_host_stepper_state_round_trip() -> None:
    model = TimeMajorRNN()
    stepper = HostStepper(model, batch=2)
    stepper.prefill(np.array([[0, 1, 2], [3, 4, 5]]))
    saved, logits = stepper.get_state(), stepper.next_logits.copy()
    assert saved["h_in"].shape == (2, 8)
    stepper.next_tokens[:] = [1, 2]
    first = stepper.step().copy()
    stepper.set_state(saved)
    stepper.next_logits[...] = logits
    stepper.next_tokens[:] = [1, 2]
    assert np.array_equal(stepper.step(), first)
    with pytest.raises(InputError, match="h_in: shape"):
        stepper.set_state({"h_in": np.zeros((3, 8))})
