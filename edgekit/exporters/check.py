"""Checking an export: the parity suite a candidate graph must pass, and why a failure happened.

The suite compares the torch reference with the candidate at the export shapes, at other shapes
(B=1 T=1 and a larger B and T, where frozen dynamic axes show), on real data, and, for recurrent
models, over a greedy rollout. The same suite serves export and `edgekit verify`.
"""

from __future__ import annotations

import numpy as np

from edgekit.exporters.plan import EXPORT_BATCH, EXPORT_TIME, Plan
from edgekit.parity import ParityReport, compare_case, rollout
from edgekit.runtimes.base import Backend
from edgekit.runtimes.layout import Layout

OTHER_SHAPES = [(1, 1), (5, 37)]
PROMPT_LENGTH = 16  # characters of real (or random) text before the rollout's greedy steps


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
    has_time = any("time" in t.shape for t in contract.inputs)
    rng = np.random.default_rng(1234)
    shapes = [
        (EXPORT_BATCH, EXPORT_TIME, "export shapes"),
        *((b, t, "other shape") for b, t in OTHER_SHAPES),
    ]
    for b, t, kind in shapes:
        label = f"{kind} B={b}" + (f" T={t}" if has_time else "")
        feeds = contract.example(b, t, rng)
        report.cases.append(compare_case(label, feeds, reference.run, candidate.run, atol, rtol))
    for label, feeds in plan.real:
        b = next(iter(feeds.values())).shape[0]
        feeds = {**contract.zero_state(b), **feeds}
        report.cases.append(compare_case(label, feeds, reference.run, candidate.run, atol, rtol))
    if contract.state and steps > 0 and contract.token_input is not None:
        layout = Layout.of(contract)
        prompt = (
            plan.real[0][1][layout.tokens.name][:, :PROMPT_LENGTH]
            if plan.real
            else rng.integers(0, contract.vocab_size, size=(1, PROMPT_LENGTH), dtype=np.int64)
        )
        report.rollout = rollout(reference.run, candidate.run, prompt, layout, steps, atol)
    return report


def explain(exporter: str, report: ParityReport, frozen: list[str]) -> str:
    """The parity table of a refused candidate, with the likely cause where the evidence shows it."""
    lines = [f"[{exporter}] parity table (torch vs onnxruntime):", report.table()]
    wrong_shape = any("shape" in o.detail for c in report.cases for o in c.outputs)
    invalid_dims = any("invalid dimensions" in c.error.lower() for c in report.cases)
    if frozen:
        lines += [f"frozen dynamic axis: {f}" for f in frozen]
    if frozen or invalid_dims:
        lines.append(
            "likely cause: the exporter specialised a dynamic axis to the example size (torch.export "
            "fixes dims whose example size is 0 or 1, and unrolls a Python loop over time at the "
            "example length); try --exporter torchscript"
        )
    elif wrong_shape:
        lines.append(
            "likely cause: a dynamic axis is frozen inside the graph (a Reshape or Expand baked the "
            "example size, pytorch/pytorch#191855) though the inputs are declared dynamic"
        )
    return "\n".join(lines)
