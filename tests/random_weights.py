"""Random weights at a scale where greedy text varies: an untrained model's logits are nearly
flat, so its greedy text repeats one character and agreement with it proves little."""

from __future__ import annotations

import torch
from torch import nn


def spread(module: nn.Module, factor: float) -> nn.Module:
    """`module` with every weight matrix (not biases or norms) multiplied by `factor`, in place."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() > 1:
                p.mul_(factor)
    return module
