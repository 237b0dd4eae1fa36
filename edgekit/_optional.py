"""One place for optional heavy imports, so a missing one fails with a fix, never a bare traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgekit.errors import MissingDependency

# module -> the extra that provides it
_EXTRA_FOR = {
    "torch": "train",
    "onnx": "train",
    "onnxscript": "train",
    "safetensors": "train",
    "sklearn": "train",
    "PIL": "images",
    "onnxruntime": "cpu",
    "tensorrt": "gpu",
    "cuda": "gpu",
    "matplotlib": "plot",
}


def require(module: str, purpose: str = "this feature") -> ModuleType:
    """Import `module` or raise MissingDependency naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA_FOR.get(top, "train")
        raise MissingDependency(
            f"{purpose} needs '{top}', which is not installed: pip install 'edgekit[{extra}]'"
        ) from exc
