"""The torch reference backend: the source checkpoint itself, behind the bundle's I/O contract.

The reference for parity and the baseline for bench. Needs the `train` extra.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.iospec import IOContract, contract_for
from edgekit.runtimes.base import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, module: Any, contract: IOContract, device: str = "cpu") -> None:
        super().__init__(contract)
        self.torch = require("torch", "the torch reference backend")
        self.device = device
        self.module = module.to(device).eval()

    @classmethod
    def from_checkpoint(cls, path: Any, device: str = "cpu") -> TorchBackend:
        from edgekit.exporters.adapters import export_module
        from edgekit.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        return cls(export_module(ckpt.build(), ckpt.meta), contract_for(ckpt.meta), device)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        args = [
            torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device)
            for n in self.contract.input_names
        ]
        with torch.inference_mode():
            out = self.module(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {
            n: o.detach().cpu().numpy()
            for n, o in zip(self.contract.output_names, outs, strict=True)
        }
