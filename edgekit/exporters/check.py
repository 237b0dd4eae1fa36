"""Checking an export: the parity suite a candidate graph must pass, and why a failure happened.

The suite compares the torch reference with the candidate at the export shapes, at other shapes
(B=1 T=1 and a larger B and T, where frozen dynamic axes show), on real data, and, for recurrent
models, over a greedy rollout. The same suite serves export and `edgekit verify`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.bundle.io import BATCH, TIME, IOContract
from edgekit.errors import InputError
from edgekit.exporters.onnx import EXPORTERS
from edgekit.exporters.plan import Plan
from edgekit.parity import ParityReport, compare_case, error_line, recorded
from edgekit.rollout import rollout
from edgekit.runtimes.base import Backend

PROMPT_LENGTH = 16  # tokens of real (or random) text before the rollout's greedy steps
# Each dynamic axis at its export size, at its minimum, and well above the export size, where a
# dimension frozen inside the graph shows (zoo: B=2 T=3, B=1 T=1, B=5 T=37).
SHAPE_CASES = (("traced", "export shapes"), ("min", "other shape"), ("large", "other shape"))


def size_label(contract: IOContract, sizes: dict[str, int]) -> str:
    short = {contract.role_axis(BATCH): "B", contract.role_axis(TIME): "T"}
    ordered = sorted(sizes, key=lambda n: (short.get(n) is None, short.get(n) or n))
    return " ".join(f"{short.get(n) or n}={sizes[n]}" for n in ordered)


def parity_suite(
    reference: Backend,
    candidate: Backend,
    plan: Plan,
    atol: float,
    rtol: float,
    steps: int,
) -> ParityReport:
    contract = plan.contract
    report = ParityReport(reference.name, candidate.name, atol, rtol)
    rng = np.random.default_rng(1234)
    seen = []
    for at, kind in SHAPE_CASES:
        sizes = contract.sizes(at=at)
        if sizes in seen:
            continue
        seen.append(sizes)
        label = f"{kind} {size_label(contract, sizes)}".strip()
        feeds = contract.feeds(sizes, rng)
        try:
            expected = reference.run(feeds)
        except Exception as exc:  # torch itself cannot run these sizes: the description is wrong
            raise reference_failure(reference, contract, at, exc) from None
        report.cases.append(
            compare_case(label, feeds, recorded(expected), candidate.run, atol, rtol)
        )
    for label, feeds in plan.real:
        b = next(iter(feeds.values())).shape[0]
        feeds = {**contract.zero_state(b), **feeds}
        report.cases.append(compare_case(label, feeds, reference.run, candidate.run, atol, rtol))
    if contract.state and steps > 0 and contract.token_input is not None:
        layout = contract.layout()
        prompt = (
            plan.real[0][1][layout.tokens.name][:, :PROMPT_LENGTH]
            if plan.real
            else rng.integers(*contract.int_range(layout.tokens), size=(1, PROMPT_LENGTH))
        )
        # the path generation takes on both sides: prefill, then one-token steps
        report.rollout = rollout(
            reference.stepper(1), candidate.stepper(1), atol, rtol, prompt, steps
        )
    return report


MAX_REASON_LINES = 40  # tracer errors can append a whole graph dump; the reason comes first


def reference_failure(
    reference: Backend, contract: IOContract, at: str, exc: Exception
) -> InputError:
    """Which axis, alone at its `at` size, makes the torch module itself fail, and what to declare."""
    traced = contract.sizes()
    culprits = []
    for name, axis in contract.axes.items():
        size = getattr(axis, at)
        if size == traced[name]:
            continue
        try:
            reference.run(contract.feeds({**traced, name: size}, np.random.default_rng(0)))
        except Exception:
            culprits.append((name, size))
    reason = error_line(exc)
    if not culprits:
        where = size_label(contract, contract.sizes(at=at))
        return InputError(f"the module itself fails at {where} ({reason})")
    name, size = culprits[0]
    if at == "min":
        fix = f"if {name} has a minimum size, declare it: axes={{{name!r}: {{'min': N}}}}"
    else:
        fix = (
            f"edgekit checks {name} above its export size to find frozen axes; export at the "
            f"largest size the module takes: axes={{{name!r}: {{'example': N}}}}"
        )
    return InputError(f"the module itself fails at {name}={size} ({reason}); {fix}")


def full_reason(exc: BaseException) -> str:
    """An exporter's or ONNX Runtime's own message (whitespace tidied; a graph dump cut short)."""
    lines = [line.rstrip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > MAX_REASON_LINES:
        lines = [*lines[:MAX_REASON_LINES], f"... ({len(lines) - MAX_REASON_LINES} more lines)"]
    text = "\n".join(lines)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def failure_kind(exc: BaseException) -> str:
    from edgekit.exporters.scripting import ScriptError

    if isinstance(exc, ScriptError):
        return "could not script the module"
    if "onnxruntime" in type(exc).__module__ or "ONNXRuntime" in str(exc)[:80]:
        return "ONNX Runtime cannot load the exported graph"
    return "export failed"


def explain(exporter: str, report: ParityReport, frozen: list[str]) -> str:
    """The parity table of a refused candidate and the frozen axes found."""
    lines = [f"[{exporter}] parity table (torch vs onnxruntime):", report.table()]
    lines += [f"frozen dynamic axis: {f}" for f in frozen]
    return "\n".join(lines)


def advice(
    attempts: list[dict[str, Any]], tried: list[str], contract: IOContract, module: Any = None
) -> str:
    """What to do next, from what was observed, suggesting only what was not tried."""
    untried = [e for e in EXPORTERS if e not in tried]
    known = _known_unsupported(module)
    if known:
        return "\n".join(
            [known, *([f"not tried yet: --exporter {' / '.join(untried)}"] if untried else [])]
        )
    frozen = [a for a in attempts if a.get("frozen_axes")]
    shape_errors = [
        a
        for a in attempts
        if any(
            "shape" in f or "invalid dimensions" in f.lower() for f in a.get("parity_failures", [])
        )
    ]
    lines = []
    if frozen or shape_errors:
        lines.append(
            "likely cause: the graph fixed a dynamic axis to its export size: tracing unrolls a "
            "Python loop over time at the example length, and bakes sizes read from a tensor into "
            "Reshape/Expand nodes; torch.export fixes axes whose example size is 0 or 1"
        )
        if "script" in tried:
            lines.append(
                "fix: if forward loops over time in Python, make it compile under torch.jit.script "
                "(type-annotated arguments, no Python-only constructs; the `script` attempt above "
                "says what did not compile) or use nn.LSTM/nn.GRU/nn.RNN, which export as one op; "
                "if a view/reshape uses sizes read from tensors, the dynamo attempt shows whether "
                "torch.export keeps them dynamic"
            )
    elif attempts and all("error" not in a for a in attempts):
        lines.append(
            "the graphs run, but their values differ from torch beyond the tolerances (see the "
            "tables); if the differences are float rounding, raise --atol / --rtol"
        )
    if untried:
        lines.append(f"not tried yet: --exporter {' / '.join(untried)}")
    return "\n".join(lines) or "every exporter was tried; see each attempt's reason above"


def _known_unsupported(module: Any) -> str:
    """A layer torch 2.13 cannot export to ONNX at all, with the way around it."""
    import torch

    for name, layer in module.named_modules() if module is not None else []:
        if isinstance(layer, torch.nn.LSTM) and layer.proj_size > 0:
            return (
                f"cause: {name or 'the module'} is nn.LSTM(proj_size={layer.proj_size}); torch's "
                "ONNX exporters have no LSTM with projections. fix: write the projected cell by "
                "hand (nn.LSTMCell, then nn.Linear on h) in a loop that torch.jit.script compiles, "
                "or drop proj_size"
            )
    return ""
