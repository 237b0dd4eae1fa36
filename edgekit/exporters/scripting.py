"""Prepare modules for the TorchScript exporter: hand-written recurrent loops become scripted
loops, so they export as an ONNX Loop with a dynamic trip count (the zoo's cells always; a user's
whole module with the `script` exporter)."""

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


def script_whole(module: nn.Module) -> tuple[nn.Module, bool]:
    """A copy whose user module is compiled by torch.jit.script (inside edgekit's flat wrapper, which
    stays traced). nn.GRUCell and nn.RNNCell become the same arithmetic in plain ops first (cells.py:
    the TorchScript exporter cannot translate them inside a loop). Raises ScriptError with torch's
    own reason when the module cannot be scripted."""
    from edgekit.exporters.cells import plain_cells
    from edgekit.exporters.module_io import FlatIO

    module = copy.deepcopy(module)
    inner = module.module if isinstance(module, FlatIO) else module
    plain_cells(inner)  # the cells inside it (a bare cell is left to the other exporters)
    try:
        scripted = torch.jit.script(inner)
    except Exception as exc:  # torch's compiler error names the line it could not compile
        raise ScriptError(
            f"torch.jit.script could not compile {type(inner).__name__}: {exc}"
        ) from exc
    if isinstance(module, FlatIO):
        module.module = scripted
        return module, True
    return scripted, False


class ScriptError(Exception):
    """The module cannot be compiled by torch.jit.script."""
