"""One place for optional heavy imports, so a missing one fails with a fix, never a bare traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgekit.errors import MissingDependency

# module -> the extra that provides it
_EXTRA_FOR = {
    "torch": "train",
    "onnx": "quantize",  # also in train; alone, what quantize needs beside the runtime
    "onnxscript": "train",
    "safetensors": "train",
    "sklearn": "train",
    "PIL": "images",
    "onnxruntime": "cpu",
    "tensorrt": "gpu",
    "cuda": "gpu",
    "matplotlib": "plot",
    "starlette": "serve",
    "uvicorn": "serve",
    "openvino": "openvino",
}


def extra_for(module: str) -> str:
    """The extra that installs `module` (its top-level package)."""
    return _EXTRA_FOR.get(module.split(".")[0], "train")


def is_optional(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in _EXTRA_FOR


def require(module: str, purpose: str = "this feature") -> ModuleType:
    """Import `module` or raise MissingDependency naming the extra that installs it."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] != top:  # installed, but broken inside
            raise MissingDependency(
                f"{purpose} needs '{top}', which is installed but cannot be imported: {exc}"
            ) from exc
        raise MissingDependency(
            f"{purpose} needs '{top}', which is not installed: pip install 'edgekit-ml[{extra_for(top)}]'"
        ) from exc
    except ImportError as exc:  # e.g. a GPU build whose CUDA libraries are missing
        raise MissingDependency(
            f"{purpose} needs '{top}', which is installed but cannot be imported: {exc}"
        ) from exc
