"""edgekit: small PyTorch models from training to fast, verified inference at the edge.

    import edgekit
    g = edgekit.load("bundles/charlm-lstm")      # numpy + onnxruntime only
    print(g.generate("the ", 200))

Importing edgekit is cheap: torch, onnx and onnxruntime load only when a function needs them.
"""

from __future__ import annotations

from typing import Any

from edgekit.version import __version__

__all__ = ["__version__", "export", "load"]


def load(
    bundle: Any,
    device: str = "cpu",
    threads: int | None = None,
    cache_optimized: bool = False,
    cuda_graph: bool = False,
    precision: str = "fp32",
    step_graph: bool | None = None,
) -> Any:
    """Load a bundle: a Classifier, Regressor or Generator, as its manifest says (torch-free)."""
    from edgekit.runtimes.loader import load as _load

    return _load(bundle, device, threads, cache_optimized, cuda_graph, precision, step_graph)


def export(*args: Any, **kwargs: Any) -> Any:
    """Export any nn.Module to a validated bundle (see edgekit.exporters.write.export)."""
    from edgekit.exporters.write import export as _export

    return _export(*args, **kwargs)
