"""torch's GRU and RNN cells written in plain ops, for the `script` exporter.

Compiled by torch.jit.script, `nn.GRUCell` and `nn.RNNCell` keep their `aten::gru_cell` /
`aten::rnn_*_cell` calls and an input check (`hx.dim() not in (1, 2)`) that the TorchScript ONNX
exporter cannot translate inside a loop, so a Python loop over either cell failed to export while
the same loop over `nn.LSTMCell` (which has an ONNX symbolic) exported as an ONNX Loop. Here each cell
is the same arithmetic, in torch's own order (`aten/src/ATen/native/RNN.cpp`), over the original
cell's parameters: Gemm, Sigmoid, Tanh. The torch reference keeps the original module; parity
compares the two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PlainGRUCell(nn.Module):
    """nn.GRUCell: r = sigmoid(x Wir + h Whr), z = sigmoid(x Wiz + h Whz),
    n = tanh(x Win + r * (h Whn + bhn)), h' = (h - n) * z + n."""

    def __init__(self, cell: nn.GRUCell) -> None:
        super().__init__()
        self.hidden_size = cell.hidden_size
        self.weight_ih = cell.weight_ih  # (3H, I): reset, update, new
        self.weight_hh = cell.weight_hh  # (3H, H)
        self.bias_ih = cell.bias_ih  # (3H,) or None
        self.bias_hh = cell.bias_hh

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, I)
        if hx is None:
            h = torch.zeros(x.size(0), self.hidden_size, dtype=x.dtype, device=x.device)
        else:
            h = hx if batched else hx.unsqueeze(0)  # (B, H)
        size = self.hidden_size
        gi = F.linear(x, self.weight_ih, self.bias_ih)  # (B, 3H)
        gh = F.linear(h, self.weight_hh, self.bias_hh)
        r = torch.sigmoid(gi[:, :size] + gh[:, :size])
        z = torch.sigmoid(gi[:, size : 2 * size] + gh[:, size : 2 * size])
        n = torch.tanh(gi[:, 2 * size :] + r * gh[:, 2 * size :])
        out = (h - n) * z + n
        return out if batched else out.squeeze(0)


class PlainRNNCell(nn.Module):
    """nn.RNNCell: h' = tanh(x Wih + bih + h Whh + bhh) (or relu)."""

    def __init__(self, cell: nn.RNNCell) -> None:
        super().__init__()
        self.hidden_size = cell.hidden_size
        self.relu = cell.nonlinearity == "relu"
        self.weight_ih = cell.weight_ih
        self.weight_hh = cell.weight_hh
        self.bias_ih = cell.bias_ih
        self.bias_hh = cell.bias_hh

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            h = torch.zeros(x.size(0), self.hidden_size, dtype=x.dtype, device=x.device)
        else:
            h = hx if batched else hx.unsqueeze(0)
        pre = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)
        out = torch.relu(pre) if self.relu else torch.tanh(pre)
        return out if batched else out.squeeze(0)


def plain_cells(module: nn.Module) -> int:
    """Replace, in place, every nn.GRUCell and nn.RNNCell under `module` (exactly those classes: a
    subclass may compute something else) by its plain-ops twin; return how many were replaced."""
    found = [
        (parent, name, child)
        for parent in module.modules()
        for name, child in parent.named_children()
        if type(child) in (nn.GRUCell, nn.RNNCell)
    ]
    for parent, name, child in found:
        if isinstance(child, nn.GRUCell):
            setattr(parent, name, PlainGRUCell(child))
        elif isinstance(child, nn.RNNCell):
            setattr(parent, name, PlainRNNCell(child))
    return len(found)
