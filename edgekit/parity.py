"""The one routine that compares two backends on the same inputs (numpy only).

A check compares every output, reports max abs and max rel difference and pass/fail against
|candidate - reference| <= atol + rtol * |reference| (numpy.allclose semantics), and keeps all failing
outputs, not just the first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

Feeds = Mapping[str, np.ndarray]
RunFn = Callable[[Feeds], Mapping[str, np.ndarray]]


@dataclass
class OutputDiff:
    name: str
    max_abs: float
    max_rel: float
    passed: bool
    detail: str = ""  # shape or dtype mismatch, non-finite values


@dataclass
class CaseResult:
    case: str  # e.g. "export shapes B=2 T=3"
    outputs: list[OutputDiff]
    error: str = ""  # the candidate failed to run at all

    @property
    def passed(self) -> bool:
        return not self.error and all(o.passed for o in self.outputs)


@dataclass
class RolloutResult:
    steps: int
    max_state_drift: list[float]  # per step, max abs over every state tensor
    max_logit_diff: float
    first_token_mismatch: int | None  # first step whose greedy choices differ; None: never
    final_drift: float
    passed: bool
    error: str = ""  # the candidate failed to run a step
    # per state tensor: [max abs drift, max |reference|] over all steps; drift is judged relative to
    # the state's own magnitude (a trained LSTM's cell state grows to the hundreds while |h| <= 1)
    state_drift: dict[str, list[float]] = field(default_factory=dict)
    logit_scale: float = 0.0  # max |reference logit| over all steps
    decisive_mismatch: int | None = None  # first mismatch where the reference's choice was clear


@dataclass
class ParityReport:
    reference: str
    candidate: str
    atol: float
    rtol: float
    cases: list[CaseResult] = field(default_factory=list)
    rollout: RolloutResult | None = None
    diagnosis: list[str] = field(default_factory=list)  # where the graph departs, when it failed

    @property
    def passed(self) -> bool:
        cases_ok = all(c.passed for c in self.cases)
        return cases_ok and (self.rollout is None or self.rollout.passed)

    def failures(self) -> list[str]:
        lines = []
        for c in self.cases:
            if c.error:
                lines.append(f"{c.case}: {c.error}")
            for o in c.outputs:
                if not o.passed:
                    what = o.detail or f"max abs diff {o.max_abs:.3g}, max rel diff {o.max_rel:.3g}"
                    lines.append(f"{c.case}: output {o.name}: {what}")
        r = self.rollout
        if r is not None and r.error:
            lines.append(f"rollout: {r.error}")
        elif r is not None and not r.passed:
            lines.append(f"rollout of {r.steps} steps: {_rollout_summary(r)}")
        return lines

    @classmethod
    def from_dict(cls, report: Mapping[str, Any]) -> ParityReport:
        """A report as `to_dict` recorded it (in a manifest, say)."""
        found = cls(report["reference"], report["candidate"], report["atol"], report["rtol"])
        for c in report.get("cases", []):
            outs = [OutputDiff(**o) for o in c["outputs"]]
            found.cases.append(CaseResult(c["case"], outs, c.get("error", "")))
        if report.get("rollout"):
            found.rollout = RolloutResult(**report["rollout"])
        found.diagnosis = list(report.get("diagnosis", []))
        return found

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        for c, raw in zip(self.cases, d["cases"], strict=True):
            raw["passed"] = c.passed
        return d

    def table(self) -> str:
        """A plain-text table, one row per (case, output)."""
        rows = [f"{'case':<34} {'output':<14} {'max abs':>10} {'max rel':>10}  result"]
        for c in self.cases:
            if c.error:
                rows.append(f"{c.case:<34} {'-':<14} {'-':>10} {'-':>10}  FAIL ({c.error})")
            for o in c.outputs:
                verdict = "ok" if o.passed else f"FAIL{' (' + o.detail + ')' if o.detail else ''}"
                rows.append(
                    f"{c.case:<34} {o.name:<14} {o.max_abs:>10.3g} {o.max_rel:>10.3g}  {verdict}"
                )
        r = self.rollout
        if r is not None:
            rows.append(_rollout_row(r))
        rows += self.diagnosis
        return "\n".join(rows)


def _rollout_summary(r: RolloutResult) -> str:
    """Every state's drift both ways (absolute, and relative to that state's size), the logits and
    the greedy choices."""
    if r.first_token_mismatch is None:
        greedy = "greedy: same tokens"
    else:
        kind = "a near tie" if r.decisive_mismatch is None else "a clear choice"
        greedy = f"greedy differs first at step {r.first_token_mismatch} ({kind})"
    states = ", ".join(
        f"{name} {worst:.2g} abs / {worst / max(size, 1e-12):.2g} rel of |{size:.3g}|"
        for name, (worst, size) in r.state_drift.items()
    )
    return f"{states}; max logit diff {r.max_logit_diff:.3g}; {greedy}"


def _rollout_row(r: RolloutResult) -> str:
    label = f"rollout {r.steps} steps"
    if r.error:
        return f"{label:<34} {'state':<14} {'-':>10} {'-':>10}  FAIL ({r.error})"
    rel = [w / max(s, 1e-12) for w, s in r.state_drift.values()] or [0.0]
    verdict = "ok" if r.passed else "FAIL"
    return (
        f"{label:<34} {'state':<14} {r.final_drift:>10.3g} {max(rel):>10.3g}  {verdict} "
        f"({_rollout_summary(r)})"
    )


def error_line(exc: BaseException) -> str:
    """An exception as one line (ONNX Runtime spreads the useful part over several)."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:3])
    return f"{type(exc).__name__}: {text[:400]}"


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    atol: float,
    rtol: float,
) -> list[OutputDiff]:
    diffs = []
    for name, ref in reference.items():
        ref = np.asarray(ref)
        if name not in candidate:
            diffs.append(OutputDiff(name, float("inf"), float("inf"), False, "missing"))
            continue
        got = np.asarray(candidate[name])
        if got.shape != ref.shape:
            detail = f"shape {got.shape}, expected {ref.shape}"
            diffs.append(OutputDiff(name, float("inf"), float("inf"), False, detail))
            continue
        if got.size == 0:
            diffs.append(OutputDiff(name, 0.0, 0.0, True))
            continue
        r64, g64 = ref.astype(np.float64), got.astype(np.float64)
        # NaN where torch gives NaN (a fully masked row, say) is agreement, not a difference
        agree = (np.isnan(r64) & np.isnan(g64)) | (np.isinf(r64) & (r64 == g64))
        if np.any(~agree & ~(np.isfinite(r64) & np.isfinite(g64))):
            diffs.append(OutputDiff(name, float("inf"), float("inf"), False, "non-finite values"))
            continue
        r64, g64 = np.where(agree, 0.0, r64), np.where(agree, 0.0, g64)
        abs_diff = np.abs(g64 - r64)
        rel = abs_diff / np.maximum(np.abs(r64), 1e-12)
        ok = bool(np.all(abs_diff <= atol + rtol * np.abs(r64)))
        diffs.append(OutputDiff(name, float(abs_diff.max()), float(rel.max()), ok))
    return diffs


def rollout_tolerance(atol: float, rtol: float, scale: float) -> float:
    """What a rollout allows a value of magnitude `scale` to drift: atol-scale noise plus rtol of it."""
    return 10 * atol + rtol * scale


def clear_choice(logits: np.ndarray, atol: float, rtol: float, scale: float) -> bool:
    """Whether the reference's greedy choice in `logits` (V,) beats the runner-up by more than
    the logits may differ: a different choice there is a real difference, not a near tie."""
    top2 = np.sort(logits)[-2:]
    return bool(top2[1] - top2[0] > 2 * rollout_tolerance(atol, rtol, scale))


def rollout_passed(
    decisive: int | None,
    state_drift: dict[str, list[float]],
    logit_diff: float,
    logit_scale: float,
    atol: float,
    rtol: float,
) -> bool:
    """The rollout verdict: no clear greedy choice differs, logits and each state within tolerance."""
    within = all(w <= rollout_tolerance(atol, rtol, s) for w, s in state_drift.values())
    return decisive is None and within and logit_diff <= rollout_tolerance(atol, rtol, logit_scale)


def recorded(outputs: Mapping[str, np.ndarray]) -> RunFn:
    """A reference that answers with outputs computed before (or stored in golden records)."""
    return lambda _feeds: outputs


def compare_case(
    case: str, feeds: Feeds, reference: RunFn, candidate: RunFn, atol: float, rtol: float
) -> CaseResult:
    expected = reference(feeds)
    try:
        got = candidate(feeds)
    except Exception as exc:  # the candidate's own error is the finding
        return CaseResult(case, [], error_line(exc))
    return CaseResult(case, compare_outputs(expected, got, atol, rtol))
