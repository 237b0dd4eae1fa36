"""Linear and logistic regression over a table of features.

Features are standardised inside the model with fixed buffers (mean, std of the training table), so
gradient descent converges quickly and the exported graph still takes raw feature rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LinearConfig:
    in_features: int = 2  # number of feature columns
    feature_mean: tuple[float, ...] = ()  # per-column mean of the training table (empty: 0)
    feature_std: tuple[float, ...] = ()  # per-column std of the training table (empty: 1)


@dataclass(frozen=True)
class LogisticConfig(LinearConfig):
    in_features: int = 1


class _Standardised(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: LinearConfig) -> None:
        super().__init__()
        n = config.in_features
        mean = torch.tensor(config.feature_mean or (0.0,) * n, dtype=torch.float32)
        std = torch.tensor(config.feature_std or (1.0,) * n, dtype=torch.float32)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(n, 1)

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, F) raw features -> (B, 1)
        return self.linear((x - self.mean) / self.std)


class LinearRegression(_Standardised):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.affine(x)  # (B, 1) predicted target


class LogisticRegression(_Standardised):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.affine(x))  # (B, 1) probability of class 1
