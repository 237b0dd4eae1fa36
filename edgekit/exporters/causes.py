"""Why no exporter gave a graph that passes, and what to do: a table of known causes matched on the
exporters' own messages, the causes the parity tables show, and a generic fallback.

Every refusal ends with two lines, `likely cause: ...` and `fix: ...`, chosen in this order: a layer
torch cannot export at all (read from the module), a known cause in an exporter's exception text
(KNOWN_CAUSES, first match wins), a dynamic axis the graph froze, values that differ, the fallback.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgekit.exporters.onnx import EXPORTERS


@dataclass(frozen=True)
class KnownCause:
    name: str
    pattern: re.Pattern[str]  # searched in each exporter's exception text (the whole chain)
    cause: str  # "{0}" is replaced by the pattern's first non-empty group, if any
    fix: str


KNOWN_CAUSES = (
    KnownCause(
        "complex numbers",
        re.compile(r"\bcomplex\b|complex-valued|Complex(?:Float|Double|Half)|complex(?:64|128)"),
        "the module computes on complex numbers (torch.stft(..., return_complex=True), torch.fft, "
        "1j); ONNX has no complex type",
        "compute the STFT outside the model or use real-valued ops (torch.stft(..., "
        "return_complex=False) and the magnitude by hand: spec.pow(2).sum(-1).sqrt(); or a "
        "Conv1d whose weights are the DFT's cos and sin rows)",
    ),
    KnownCause(
        "unsupported operator",
        re.compile(
            r"No ONNX function found for <OpOverload\(op='([\w.]+)'"
            r"|No ONNX function found for ([\w.:]+)"
            r"|Exporting the operator '?([\w.:]+?)'? to ONNX opset version \d+ is not supported"
            r"|Unsupported: ONNX export of operator (\w+)"
            r"|UnsupportedOperatorError"  # a name the alternatives above may find elsewhere
        ),
        "an operator has no ONNX translation: {0}",
        "write that step with operators ONNX has (or compute it outside the model); another "
        "--opset or --exporter may translate it (dynamo covers the most operators)",
    ),
    KnownCause(
        "data-dependent control flow",
        re.compile(
            r"data-dependent|GuardOnDataDependent|Could not guard on|tolist\(\)|\.item\(\)"
            r"|Dynamic control flow|Converting a tensor to a Python"
        ),
        "forward reads values out of its tensors to decide what to compute (if on a tensor, "
        ".item(), .tolist()); a graph cannot follow Python values",
        "compute with tensor ops instead (torch.where, masks, clamp), or branch with torch.cond; "
        "keep Python loops to sizes (range(x.shape[1])), never to values",
    ),
    KnownCause(
        "dynamic shapes",
        re.compile(
            r"Constraints violated|ConstraintViolation|specializ|must always be equal"
            r"|dynamic_shapes|Dim\("
        ),
        "a dynamic axis cannot stay dynamic: the module fixes its size (a constant in a "
        "view/reshape, a size check) or its example size is 0 or 1",
        "read sizes from x.shape instead of constants, export at size >= 2 on every dynamic axis "
        "(axes={name: {'example': N}}), or declare the axis fixed (leave it out of dynamic_axes)",
    ),
)

GENERIC = (
    "no exporter gave a graph that matches torch (each exporter's reason is above)",
    "rewrite the line each reason names with plain tensor ops, or compute that part outside the "
    "model; the full output of every exporter is in the file named above",
)


def known_cause(texts: Sequence[str]) -> tuple[str, str] | None:
    """(cause, fix) of the first known cause found in any of `texts`, in table order."""
    for known in KNOWN_CAUSES:
        found = [m for text in texts for m in known.pattern.finditer(text)]
        if found:
            named = (g for m in found for g in m.groups() if g)
            return known.cause.format(next(named, "see the reasons above")), known.fix
    return None


def advice(
    attempts: list[dict[str, Any]],
    tried: list[str],
    module: Any = None,
    errors: Sequence[str] = (),
) -> list[str]:
    """What to do next, from what was observed: `not tried yet` (only what was not), then the
    likely cause and the fix. `errors`: the full exception texts of the exporters that raised."""
    untried = [e for e in EXPORTERS if e not in tried]
    lines = [f"not tried yet: --exporter {' / '.join(untried)}"] if untried else []
    cause = _known_unsupported(module) or known_cause(errors) or _from_parity(attempts, tried)
    cause = cause or GENERIC
    return [*lines, f"likely cause: {cause[0]}", f"fix: {cause[1]}"]


def _from_parity(attempts: list[dict[str, Any]], tried: list[str]) -> tuple[str, str] | None:
    frozen = [a for a in attempts if a.get("frozen_axes")]
    shape_errors = [
        a
        for a in attempts
        if any(
            "shape" in f or "invalid dimensions" in f.lower() for f in a.get("parity_failures", [])
        )
    ]
    if frozen or shape_errors:
        cause = (
            "the graph fixed a dynamic axis to its export size: tracing unrolls a Python loop over "
            "time at the example length, and bakes sizes read from a tensor into Reshape/Expand "
            "nodes; torch.export fixes axes whose example size is 0 or 1"
        )
        loops = (
            "make it compile under torch.jit.script (type-annotated arguments, no Python-only "
            "constructs; the `script` attempt above says what did not compile)"
            if "script" in tried
            else "try --exporter script, which compiles it into an ONNX Loop"
        )
        fix = (
            f"if forward loops over time in Python, {loops}, or use nn.LSTM/nn.GRU/nn.RNN, which "
            "export as one op; if a view/reshape uses sizes read from tensors, the dynamo attempt "
            "shows whether torch.export keeps them dynamic"
        )
        return cause, fix
    if attempts and all("error" not in a for a in attempts):
        return (
            "the graphs run, but their values differ from torch beyond the tolerances",
            "if the differences are float rounding, raise --atol / --rtol; otherwise the first "
            "diverging node above is where the graph departs from torch",
        )
    return None


def _known_unsupported(module: Any) -> tuple[str, str] | None:
    """A layer torch 2.13 cannot export to ONNX at all, with the way around it."""
    import torch

    for name, layer in module.named_modules() if module is not None else []:
        if isinstance(layer, torch.nn.LSTM) and layer.proj_size > 0:
            return (
                f"{name or 'the module'} is nn.LSTM(proj_size={layer.proj_size}); torch's ONNX "
                "exporters have no LSTM with projections",
                "write the projected cell by hand (nn.LSTMCell, then nn.Linear on h) in a loop "
                "that torch.jit.script compiles, or drop proj_size",
            )
    return None
