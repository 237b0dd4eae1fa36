"""Exporters: torch -> ONNX bundles (with parity proven at export time), and TensorRT engines.

An export runs four jobs, one module each: `plan` (checkpoint or module -> what to export and how
to check it), `write` (export candidates, keep the first that passes, publish atomically), `check`
(the parity suite) and `verify` (re-run the suite on a written bundle). `onnx` holds the torch
exporters and the static graph checks; `refusal` and `causes` say, in a few lines, why no candidate
passed and what to do; `tensorrt` builds engines.

`export(module, example_inputs, out=...)` for any nn.Module; `bundle_from_checkpoint` for the zoo.
Both return an ExportResult (the bundle, its typed manifest, the parity report), which still
unpacks as `(path, manifest document)`.
"""

from __future__ import annotations

from typing import Any

from edgekit.exporters.result import ExportOptions, ExportResult


def export(*args: Any, **kwargs: Any) -> Any:
    from edgekit.exporters.write import export as _export

    return _export(*args, **kwargs)


def bundle_from_checkpoint(*args: Any, **kwargs: Any) -> Any:
    from edgekit.exporters.write import bundle_from_checkpoint as _bundle

    return _bundle(*args, **kwargs)


__all__ = ["ExportOptions", "ExportResult", "bundle_from_checkpoint", "export"]
