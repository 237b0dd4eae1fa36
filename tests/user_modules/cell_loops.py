"""Python loops over nn.GRUCell and nn.RNNCell, the analogues of models.CellLoopLM (nn.LSTMCell):
tokens (B, T), h (B, H) -> logits (B, T, V), the new h."""

from __future__ import annotations

import torch
from torch import nn

from tests.user_modules.models import H, V


class GRUCellLoopLM(nn.Module):
    """An unscripted Python loop over nn.GRUCell; state (B, H), batch on axis 0."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.cell = nn.GRUCell(H, H)
        self.head = nn.Linear(H, V)

    def forward(self, tokens: torch.Tensor, h: torch.Tensor):
        x = self.embed(tokens)  # (B, T, H)
        outs = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            outs.append(self.head(h))
        return torch.stack(outs, 1), h


class RNNCellLoopLM(nn.Module):
    """The same loop over nn.RNNCell (relu, no biases), its cells in a ModuleList."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.cells = nn.ModuleList([nn.RNNCell(H, H, bias=False, nonlinearity="relu")])
        self.head = nn.Linear(H, V)

    def forward(self, tokens: torch.Tensor, h: torch.Tensor):
        x = self.embed(tokens)
        outs = []
        for t in range(x.shape[1]):
            for cell in self.cells:
                h = cell(x[:, t], h)
            outs.append(self.head(h))
        return torch.stack(outs, 1), h
