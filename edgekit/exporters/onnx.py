"""torch -> ONNX with either exporter, and the static checks every exported graph must pass."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from edgekit.bundle.io import IOContract
from edgekit.errors import InputError
from edgekit.exporters.scripting import script_loops, script_whole

# dynamo: torch.export; torchscript: the tracing exporter (hand-written loops of the zoo scripted);
# script: the whole user module compiled by torch.jit.script first, so Python loops over time become
# an ONNX Loop instead of being unrolled at the example length (nn.GRUCell / nn.RNNCell as plain ops,
# cells.py).
EXPORTERS = ("dynamo", "torchscript", "script")
DEFAULT_OPSET = {"dynamo": 18, "torchscript": 17, "script": 17}
MIN_OPSET = 14


def opset_range(exporter: str) -> tuple[int, int]:
    """The opsets each exporter can write (torch's own limits, capped by the installed onnx)."""
    import onnx
    from torch.onnx import _constants

    newest = min(onnx.defs.onnx_opset_version(), _constants.ONNX_MAX_OPSET)
    if exporter in ("torchscript", "script"):
        return MIN_OPSET, min(newest, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    return 18, newest  # the dynamo exporter writes opset 18 and later


def usable_exporters(candidates: list[str], opset: int | None) -> list[str]:
    """The candidates that can write `opset`; an opset none of them supports is bad input."""
    if opset is None:
        return candidates
    usable = [e for e in candidates if opset_range(e)[0] <= opset <= opset_range(e)[1]]
    if not usable:
        ranges = ", ".join(f"{e} {lo}..{hi}" for e in candidates for lo, hi in [opset_range(e)])
        raise InputError(f"unsupported opset {opset}; supported: {ranges}")
    return usable


def onnx_from_module(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    contract: IOContract,
    path: Path,
    exporter: str,
    opset: int | None = None,
) -> list[str]:
    """Export `module` to `path` (a single self-contained file); return the warnings it raised."""
    opset = opset or DEFAULT_OPSET[exporter]
    # the dynamo exporter logs a warning per torchvision op it cannot register; not our concern
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if exporter in ("torchscript", "script"):
            target, scripted = (
                script_whole(module) if exporter == "script" else script_loops(module)
            )
            if scripted:  # trace the outer module; scripted submodules keep their loops
                target = torch.jit.trace(target, example)
            torch.onnx.export(
                target,
                example,
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=contract.input_names,
                output_names=contract.output_names,
                dynamic_axes=contract.dynamic_axes(),
            )
        elif exporter == "dynamo":
            torch.onnx.export(
                module,
                example,
                str(path),
                dynamo=True,
                opset_version=opset,
                input_names=contract.input_names,
                output_names=contract.output_names,
                dynamic_shapes=_dynamic_shapes(module, contract),
                external_data=False,
                verbose=False,
            )
        else:
            raise InputError(f"unknown exporter {exporter!r}; known: auto, {', '.join(EXPORTERS)}")
    return sorted(
        {f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}" for w in caught}
    )


def _dynamic_shapes(module: torch.nn.Module, contract: IOContract) -> tuple[Any, ...]:
    """torch.export's Dim per named axis (one object per name, so equal names stay equal sizes)."""
    from edgekit.exporters.module_io import FlatIO

    dims: dict[str, Any] = {}
    shapes = []
    for t in contract.inputs:
        axes = {}
        for i, d in enumerate(t.shape):
            if isinstance(d, str) and not contract.axes[d].fixed:  # a fixed axis stays static
                identifier = re.sub(r"\W", "_", d)
                low = contract.axes[d].min
                axes[i] = dims.setdefault(d, torch.export.Dim(identifier, min=low, max=1 << 16))
        shapes.append(axes)
    # FlatIO.forward(*flat) has one variadic parameter: its shapes go in one tuple
    return (tuple(shapes),) if isinstance(module, FlatIO) else tuple(shapes)


def frozen_axes(path: Path, contract: IOContract) -> list[str]:
    """Declared dynamic axes that the graph's inputs or outputs fix to a number."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    declared = {t.name: t for t in [*contract.inputs, *contract.outputs]}
    found = []
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for v in values:
            spec = declared.get(v.name)
            if spec is None:
                continue
            dims = v.type.tensor_type.shape.dim
            for axis, want in enumerate(spec.shape):
                if (
                    isinstance(want, str)
                    and not contract.axes[want].fixed  # static by declaration
                    and axis < len(dims)
                    and dims[axis].HasField("dim_value")
                ):
                    found.append(
                        f"{kind} {v.name} axis {axis} ({want}) is frozen to {dims[axis].dim_value}"
                    )
    return found


def finalize_graph(path: Path, metadata: dict[str, str]) -> None:
    """Attach metadata and run the full ONNX checker (raises on an invalid graph)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)
