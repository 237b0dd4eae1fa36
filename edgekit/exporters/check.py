"""Checking an export: the parity suite a candidate graph must pass (why a refused export failed,
and what to do, is causes.py and refusal.py).

The suite compares the torch reference with the candidate at the export shapes, at other shapes
(B=1 T=1 and a larger B and T, where frozen dynamic axes show), on real data, and, for recurrent
models, over a greedy rollout. The same suite serves export and `edgekit verify`.
"""

from __future__ import annotations

import numpy as np

from edgekit.bundle.io import BATCH, TIME, IOContract
from edgekit.errors import InputError
from edgekit.exporters.plan import Plan
from edgekit.parity import ParityReport, compare_case, error_line, recorded
from edgekit.progress import stage
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
        stage(f"parity: {label}")
        feeds = contract.feeds(sizes, rng)
        try:
            expected = reference.run(feeds)
        except Exception as exc:  # torch itself cannot run these sizes: the description is wrong
            raise reference_failure(reference, contract, at, exc) from None
        report.cases.append(
            compare_case(label, feeds, recorded(expected), candidate.run, atol, rtol)
        )
    for label, feeds in plan.real:
        stage(f"parity: {label}")
        b = next(iter(feeds.values())).shape[0]
        feeds = {**contract.zero_state(b), **feeds}
        report.cases.append(compare_case(label, feeds, reference.run, candidate.run, atol, rtol))
    if contract.state and steps > 0 and contract.token_input is not None:
        prompt, context, steps = rollout_start(plan, rng, steps)
        # the path generation takes on both sides: prefill, then one-token steps
        stage(f"parity: greedy rollout of {steps} steps")
        report.rollout = rollout(
            reference.stepper(1), candidate.stepper(1), atol, rtol, prompt, steps, context
        )
    return report


def rollout_start(
    plan: Plan, rng: np.random.Generator, steps: int
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """The greedy rollout's prompt (1, T0), one stream's context (random, drawn like the shape
    cases' inputs) and its steps (as many as asked where a growing state has room): the start of
    parity's rollout and of the golden record's."""
    contract = plan.contract
    layout = contract.layout()
    prompt = (
        plan.real[0][1][layout.tokens.name][:, :PROMPT_LENGTH]
        if plan.real
        else rng.integers(*contract.int_range(layout.tokens), size=(1, PROMPT_LENGTH))
    )
    context = {}
    if contract.context:
        drawn = contract.feeds(contract.sizes(batch=1, time=PROMPT_LENGTH), rng)
        context = {name: drawn[name] for name in contract.context}
    room = contract.max_positions
    if room is not None:  # a KV cache holds the prompt and every step
        steps = max(0, min(steps, room - prompt.shape[1]))
    return np.asarray(prompt, np.int64), context, steps


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
