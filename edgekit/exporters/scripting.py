"""Prepare modules for the TorchScript exporter: hand-written recurrent loops become scripted
loops, so they export as an ONNX Loop with a dynamic trip count."""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgekit.models.charlm import CharLM


def script_loops(module: nn.Module) -> tuple[nn.Module, bool]:
    """A copy whose hand-written recurrent layers are TorchScript, so their time loop exports as an
    ONNX Loop with a dynamic trip count instead of being unrolled at the example length."""
    module = copy.deepcopy(module)
    for parent in module.modules():
        if isinstance(parent, CharLM) and len(parent.cells) > 0:
            for i, cell in enumerate(parent.cells):
                parent.cells[i] = torch.jit.script(cell)
    # a module holding scripted parts (ours, or a user's own) must be traced before export
    scripted = any(isinstance(m, torch.jit.ScriptModule) for m in module.modules())
    return module, scripted
