"""Exporters: torch -> ONNX bundles (with parity proven at export time).

`export(module, example_inputs, out=...)` for any nn.Module; `bundle_from_checkpoint` for the zoo.
"""

from __future__ import annotations

from typing import Any


def export(*args: Any, **kwargs: Any) -> Any:
    from edgekit.exporters.bundle import export as _export

    return _export(*args, **kwargs)


def bundle_from_checkpoint(*args: Any, **kwargs: Any) -> Any:
    from edgekit.exporters.bundle import bundle_from_checkpoint as _bundle

    return _bundle(*args, **kwargs)


__all__ = ["bundle_from_checkpoint", "export"]
