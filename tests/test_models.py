"""Model zoo: every model builds from the registry and keeps its I/O contract."""

from __future__ import annotations

import pytest
import torch

from edgekit.errors import InputError
from edgekit.models import MODELS, get_model
from edgekit.models.charlm import CELLS, CharLM, CharLMConfig, state_names


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(InputError, match="known models: linear, logistic, cnn"):
        get_model("resnet")


@pytest.mark.parametrize(
    ("name", "config", "x", "out_shape"),
    [
        ("linear", {"in_features": 2}, torch.randn(4, 2), (4, 1)),
        ("logistic", {"in_features": 1}, torch.randn(4, 1), (4, 1)),
        ("cnn", {"image_size": 32}, torch.randn(3, 3, 32, 32), (3, 1)),
        ("cnn", {"image_size": 32, "num_classes": 5}, torch.randn(3, 3, 32, 32), (3, 5)),
        ("lenet", {}, torch.randn(3, 1, 28, 28), (3, 10)),
        ("rowlstm", {}, torch.randn(3, 1, 28, 28), (3, 10)),
    ],
)
def test_forward_shapes(name: str, config: dict, x: torch.Tensor, out_shape: tuple) -> None:
    entry = get_model(name)
    module = entry.build(entry.config_from_dict(config)).eval()
    with torch.no_grad():
        assert tuple(module(x).shape) == out_shape


def test_cnn_two_class_head_is_a_probability() -> None:
    entry = get_model("cnn")
    module = entry.build(entry.config_from_dict({"image_size": 32})).eval()
    with torch.no_grad():
        p = module(torch.randn(8, 3, 32, 32))
    assert ((p >= 0) & (p <= 1)).all()


def test_cnn_architecture_matches_the_seed() -> None:
    module = get_model("cnn").build(get_model("cnn").config_from_dict({}))
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 16, (3, 3)),
        (16, 32, (3, 3)),
        (32, 64, (3, 3)),
        (64, 128, (3, 3)),
        (128, 1, (1, 1)),
    ]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("embed", [0, 8])
def test_charlm_contract(cell: str, embed: int) -> None:
    model = CharLM(CharLMConfig(vocab_size=11, cell=cell, layers=2, hidden=6, embed=embed)).eval()
    tokens = torch.randint(0, 11, (3, 5))
    with torch.no_grad():
        logits, state = model(tokens)
    assert logits.shape == (3, 5, 11)
    assert len(state) == len(state_names(cell))
    assert all(s.shape == (2, 3, 6) for s in state)


@pytest.mark.parametrize("cell", CELLS)
def test_charlm_prefill_equals_step_by_step(cell: str) -> None:
    """Carrying state through T one-token calls gives the same logits as one T-long call."""
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=9, cell=cell, layers=2, hidden=8)).eval()
    tokens = torch.randint(0, 9, (2, 7))
    with torch.no_grad():
        full, _ = model(tokens)
        state, steps = None, []
        for t in range(7):
            logits, state = model(tokens[:, t : t + 1], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-6, rtol=1e-5)


def test_scratch_lstm_is_a_real_lstm() -> None:
    """The hand-written cell computes what nn.LSTMCell does once its weights are rearranged."""
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=5, cell="scratch-lstm", layers=1, hidden=4)).eval()
    gates = model.cells[0].gates  # weight (4H, H + V) over concat[h, x]; gate order f, i, g, o
    ref = torch.nn.LSTMCell(5, 4)  # weight_ih (4H, V), weight_hh (4H, H); gate order i, f, g, o
    w_h, w_x = gates.weight[:, :4], gates.weight[:, 4:]
    order = torch.cat([torch.arange(4, 8), torch.arange(0, 4), torch.arange(8, 16)])
    with torch.no_grad():
        ref.weight_ih.copy_(w_x[order])
        ref.weight_hh.copy_(w_h[order])
        ref.bias_ih.copy_(gates.bias[order])
        ref.bias_hh.zero_()
    tokens = torch.tensor([[0, 3, 1, 4]])
    with torch.no_grad():
        _, (h, c) = model(tokens)
        hx = cx = torch.zeros(1, 4)
        for t in range(4):
            hx, cx = ref(torch.nn.functional.one_hot(tokens[:, t], 5).float(), (hx, cx))
    torch.testing.assert_close(h[0], hx)
    torch.testing.assert_close(c[0], cx)


def test_unknown_cell_is_refused() -> None:
    with pytest.raises(ValueError, match="known cells: rnn, lstm, gru"):
        CharLMConfig(vocab_size=4, cell="transformer")


def test_registry_tasks() -> None:
    assert {n: e.task for n, e in MODELS.items()} == {
        "linear": "regress",
        "logistic": "classify",
        "cnn": "classify",
        "lenet": "classify",
        "rowlstm": "classify",
        "charlm": "generate",
    }
