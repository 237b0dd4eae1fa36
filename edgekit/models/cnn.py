"""Image classifiers: the seed's cat/dog CNN and a LeNet-style digit net."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class CNNConfig:
    num_classes: int = 2  # 2: one sigmoid output (the seed's head); more: softmax logits
    image_size: int = 128  # square input side, pixels
    channels: tuple[int, ...] = (16, 32, 64, 128)  # output channels of the conv blocks


class CatDogCNN(nn.Module):
    """4 x [Conv3x3(pad 1) + ReLU + MaxPool2], Conv1x1 to the class count, global average pool."""

    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for out_ch in config.channels:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2)]
            in_ch = out_ch
        outputs = 1 if config.num_classes == 2 else config.num_classes
        layers += [nn.Conv2d(in_ch, outputs, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if config.num_classes == 2:
            layers.append(nn.Sigmoid())
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 3, S, S) normalised RGB -> (B, 1) P(class 1), or (B, C) logits
        return self.model(x)


@dataclass(frozen=True)
class LeNetConfig:
    num_classes: int = 10
    image_size: int = 28  # 28 (MNIST-like) or 32 (the original LeNet input)


class LeNet(nn.Module):
    """conv5x5 -> pool -> conv5x5 -> pool -> FC -> FC."""

    def __init__(self, config: LeNetConfig) -> None:
        super().__init__()
        pad = 2 if config.image_size == 28 else 0  # 28x28 is padded to behave like 32x32
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=pad),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),  # (B, 6, 14, 14)
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),  # (B, 16, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, config.num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, 28, 28) -> (B, num_classes) logits
        return self.classifier(self.features(x))
