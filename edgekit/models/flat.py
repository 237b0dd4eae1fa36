"""Zoo modules in the flat signatures export and the torch reference need: named tensors in,
a tuple out (recurrent state as explicit inputs and outputs)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgekit.models.charlm import CharLM


class OneStateLM(nn.Module):
    """tokens (B, T), state_in.h (L, B, H) -> logits (B, T, V), state_out.h (L, B, H)."""

    def __init__(self, lm: CharLM) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, tokens: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, (h_out,) = self.lm(tokens, (h,))
        return logits, h_out


class TwoStateLM(nn.Module):
    """tokens, state_in.h, state_in.c -> logits, state_out.h, state_out.c (LSTM cells)."""

    def __init__(self, lm: CharLM) -> None:
        super().__init__()
        self.lm = lm

    def forward(
        self, tokens: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, (h_out, c_out) = self.lm(tokens, (h, c))
        return logits, h_out, c_out


def export_module(module: nn.Module, meta: dict[str, Any]) -> nn.Module:
    """The module to export (and to use as the torch reference) for a zoo checkpoint."""
    if isinstance(module, CharLM):
        return (
            TwoStateLM(module)
            if meta["config"]["cell"] in ("lstm", "scratch-lstm")
            else OneStateLM(module)
        )
    return module
