"""edgekit: small PyTorch models from training to fast, verified inference at the edge.

Importing edgekit is cheap: heavy modules (torch, onnx, onnxruntime) load only when a function that
needs them is called.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
