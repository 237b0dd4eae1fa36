"""The seed's row classifier: an LSTM reads a 28x28 image one row per step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class RowLSTMConfig:
    input_size: int = 28  # pixels per row
    hidden: int = 100
    num_classes: int = 10


class RowLSTM(nn.Module):
    def __init__(self, config: RowLSTMConfig) -> None:
        super().__init__()
        self.lstm = nn.LSTM(config.input_size, config.hidden, batch_first=True)
        self.fc = nn.Linear(config.hidden, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, 28, 28) or (B, 28, 28) -> rows (B, T=28, 28)
        rows = x.reshape(x.shape[0], x.shape[-2], x.shape[-1])
        out, _ = self.lstm(rows)  # (B, T, H)
        return self.fc(out[:, -1, :])  # (B, num_classes) logits from the last step
