"""The torch reference backend: a module (or a zoo checkpoint) behind a bundle's I/O contract."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit.bundle.io import IOContract
from edgekit.iospec import contract_for
from edgekit.runtimes.base import Backend


class TorchBackend(Backend):
    """Eager PyTorch, or (on CUDA, with `graph`) each prepared call replayed as a CUDA graph."""

    name = "torch"

    def __init__(
        self,
        module: torch.nn.Module,
        contract: IOContract,
        device: str = "cpu",
        graph: bool = False,
    ) -> None:
        super().__init__(contract)
        self.device = device
        self.graph = graph and device != "cpu"
        self.module = module.to(device).eval()
        self.name = (
            "torch" if device == "cpu" else f"torch-{device}{'-graph' if self.graph else ''}"
        )

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "cpu", threads: int | None = None, graph: bool = False
    ) -> TorchBackend:
        from edgekit.models.flat import export_module
        from edgekit.training.checkpoint import load_checkpoint

        if threads is not None:
            torch.set_num_threads(threads)
        ckpt = load_checkpoint(path)
        module = export_module(ckpt.build(), ckpt.meta)
        return cls(module, contract_for(ckpt.meta), device, graph)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
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

    def prepared(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """The module on tensors placed once (no numpy round trips), as a tuned app would run it."""
        args = [torch.from_numpy(feeds[n]).to(self.device) for n in self.contract.input_names]
        module = self.module

        def run() -> Any:
            with torch.inference_mode():
                return module(*args)

        return self._finish(run)

    def greedy_step(self, streams: int) -> Callable[[], object]:
        """One greedy step of `streams` streams with state and argmax on the device."""
        if self.contract.context or self.contract.growing:  # the host stepper readies those
            return super().greedy_step(streams)
        layout = self.layout
        tokens = torch.zeros(layout.token_shape(streams, 1), dtype=torch.int64, device=self.device)
        held = {layout.tokens.name: tokens}  # inputs at fixed addresses (CUDA graphs replay them)
        held |= {s.input: torch.zeros(s.shape(streams), device=self.device) for s in layout.state}
        args = [held[n] for n in self.contract.input_names]
        outputs = self.contract.output_names
        next_tokens = tokens.select(layout.token_axes[1], 0)  # (B,) view
        module = self.module

        def step() -> None:
            with torch.inference_mode():
                out = dict(zip(outputs, module(*args), strict=True))
                for s in layout.state:  # in place: the next call reads the same addresses
                    held[s.input].copy_(out[s.output])
                next_tokens.copy_(
                    out[layout.logits.name].select(layout.logits_axes[1], -1).argmax(-1)
                )

        return self._finish(step)

    def _finish(self, work: Callable[[], Any]) -> Callable[[], Any]:
        """On CUDA: optionally capture `work` in a CUDA graph; always synchronise after a call."""
        if self.device == "cpu":
            return work
        if self.graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm up outside the capture, as torch requires
                for _ in range(3):
                    work()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                work()
            work = graph.replay

        def synced() -> None:
            work()
            torch.cuda.synchronize()

        return synced
