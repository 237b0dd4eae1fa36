"""The stepping contract and the one rollout loop over it (numpy only).

A `Stepper` advances B independent streams of a recurrent graph: every backend has one (bound
buffers on ONNX Runtime, explicit state on OpenVINO and TensorRT, host state for torch). A
`Rollout` drives one: prefill a prompt, then steps that each feed the chosen tokens back, chosen
greedily, by sampling (the Generator's decoder), or given (teacher forcing). `trace` records what
one stream saw on such a rollout.

Export parity, `edgekit verify`, golden records and their replay (`edgekit check`), the step graph's
check and quantize's gates all call `rollout`: the reference's trace (live, or stored in the golden
records) against a candidate stepper fed the reference's tokens, so a near tie that flips one choice
does not send the two down different texts, and every check judges the path generation takes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgekit.parity import RolloutResult, clear_choice, error_line, rollout_passed


class Stepper(Protocol):
    """Steps B streams: write tokens into `next_tokens`, call `step()`, read `next_logits`."""

    batch: int  # B
    next_tokens: np.ndarray  # (B,) int64: the token each stream is fed at the next step
    next_logits: np.ndarray  # (B, V) float32: the scores after the last call (a view)

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Feed (B, T) token ids in one call; return the last step's logits (B, V)."""
        ...

    def step(self) -> np.ndarray:
        """Advance every stream by `next_tokens`; return logits (B, V)."""
        ...

    def get_state(self) -> dict[str, np.ndarray]:
        """A copy of the state of every stream, by state input name."""
        ...

    def set_state(self, state: Mapping[str, np.ndarray]) -> None: ...

    def reset(self) -> None:
        """Every stream back to its initial (zero) state."""
        ...

    def set_context(self, values: Mapping[str, np.ndarray]) -> None:
        """The per-stream inputs every call reads (a bundle with context inputs)."""
        ...


Choose = Callable[[np.ndarray, np.ndarray], None]  # (logits (B, V), tokens out (B,)): write picks


def greedy_choice(logits: np.ndarray, out: np.ndarray) -> None:
    np.argmax(logits, axis=-1, out=out)


class Rollout:
    """Drives a stepper: `prefill(ids)`, then `advance()` = choose every stream's next token from
    the last logits, write it into the stepper's token buffer, step. Allocation-free with greedy
    choice (argmax writes into the bound buffer)."""

    def __init__(self, stepper: Stepper, choose: Choose = greedy_choice) -> None:
        self.stepper, self.choose = stepper, choose
        self.tokens = stepper.next_tokens  # (B,) the tokens fed at the last step

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        return self.stepper.prefill(ids)

    def advance(self) -> np.ndarray:
        """One step of every stream; returns the logits (B, V) after it (a view)."""
        self.choose(self.stepper.next_logits, self.tokens)
        return self.stepper.step()


def _given(tokens: np.ndarray) -> Choose:
    """Teacher forcing: stream 0 is fed `tokens` in turn, whatever the logits say."""
    given = iter(np.asarray(tokens, np.int64))

    def choose(_logits: np.ndarray, out: np.ndarray) -> None:
        out[0] = next(given)

    return choose


@dataclass
class Trace:
    """What one stream saw: call 0 fed the prompt, call k >= 1 fed tokens[k - 1]."""

    prompt: np.ndarray  # (1, T0) int64
    tokens: np.ndarray  # (steps,) int64: the token fed at each step
    logits: np.ndarray  # (steps + 1, V) float32: the scores after each call
    states: list[dict[str, np.ndarray]]  # after each call (steps + 1 of them), or the last only
    context: dict[str, np.ndarray] = field(default_factory=dict)  # the stream's context, if any

    @property
    def steps(self) -> int:
        return len(self.tokens)


class StepFailed(Exception):
    """A stepper failed at `step` (0: the prefill): the candidate's own error is the finding."""

    def __init__(self, step: int, cause: BaseException) -> None:
        super().__init__(f"step {step}: {error_line(cause)}")
        self.step = step


def trace(
    stepper: Stepper,
    prompt: np.ndarray,
    steps: int = 0,
    forced: np.ndarray | None = None,
    every_state: bool = True,
    context: Mapping[str, np.ndarray] | None = None,
) -> Trace:
    """Prefill `prompt` (1, T0) on stream 0, then `steps` one-token steps, each fed the greedy
    choice (free) or the next of `forced` (teacher-forced: then steps = len(forced)); a bundle
    with context inputs reads `context` (batch 1) at every call."""
    prompt = np.asarray(prompt, np.int64)
    if context:
        stepper.set_context(context)
    count = steps if forced is None else len(forced)
    roll = Rollout(stepper, greedy_choice if forced is None else _given(forced))
    logits: list[np.ndarray] = []
    states: list[dict[str, np.ndarray]] = []
    for call in range(count + 1):
        try:
            row = (roll.prefill(prompt) if call == 0 else roll.advance())[0]
            logits.append(np.array(row, np.float32))  # a copy: the next call overwrites the row
            if every_state or call == count:
                states.append(stepper.get_state())
        except Exception as exc:  # the stepper's own failure is the finding
            raise StepFailed(call, exc) from exc
    fed = np.array([row.argmax() for row in logits[:-1]], np.int64) if forced is None else forced
    return Trace(prompt, np.asarray(fed, np.int64), np.stack(logits), states, dict(context or {}))


def judge(reference: Trace, candidate: Trace, atol: float, rtol: float) -> RolloutResult:
    """No greedy choice differs where the reference's choice was clear (its top-2 margin above
    what the logits may differ), and the logits and every state tensor stay within atol-scale
    noise plus rtol times their own magnitude (a trained LSTM's cell state grows to the hundreds
    while |h| <= 1, so each state is judged against its own size)."""
    ref_logits, cand_logits = reference.logits, candidate.logits  # (steps + 1, V) each
    logit_scale = float(np.abs(ref_logits).max()) if ref_logits.size else 0.0
    logit_diff = float(np.abs(ref_logits - cand_logits).max()) if ref_logits.size else 0.0
    mismatch: int | None = None
    decisive: int | None = None
    for call in np.flatnonzero(ref_logits.argmax(-1) != cand_logits.argmax(-1)):
        mismatch = int(call) if mismatch is None else mismatch
        if clear_choice(ref_logits[call], atol, rtol, logit_scale):
            decisive = int(call)
            break
    # compare the states both sides kept: after every step (the prefill's only when there are no
    # steps), or after the last call
    pairs = list(zip(reference.states[::-1], candidate.states[::-1], strict=False))[::-1]
    if len(pairs) == reference.steps + 1 and reference.steps > 0:
        pairs = pairs[1:]
    per_state: dict[str, list[float]] = {}
    drift: list[float] = []
    for ref_state, cand_state in pairs:
        gaps = []
        for name, want in ref_state.items():
            gap = float(np.abs(cand_state[name] - want).max())
            worst, size = per_state.get(name, [0.0, 0.0])
            per_state[name] = [max(worst, gap), max(size, float(np.abs(want).max()))]
            gaps.append(gap)
        drift.append(max(gaps, default=0.0))
    passed = rollout_passed(decisive, per_state, logit_diff, logit_scale, atol, rtol)
    final = drift[-1] if drift else 0.0
    return RolloutResult(
        reference.steps,
        drift,
        logit_diff,
        mismatch,
        final,
        passed,
        "",
        per_state,
        logit_scale,
        decisive,
    )


def rollout(
    reference: Stepper | Trace,
    candidate: Stepper,
    atol: float,
    rtol: float,
    prompt: np.ndarray | None = None,
    steps: int = 0,
    context: Mapping[str, np.ndarray] | None = None,
) -> RolloutResult:
    """The candidate, teacher-forced with the reference's tokens, judged against the reference:
    a live stepper rolled out free (greedy) from `prompt` for `steps` (reading `context`), or a
    stored Trace (with the context it kept)."""
    if not isinstance(reference, Trace):
        if prompt is None:
            raise ValueError("a live reference needs a prompt")
        reference = trace(reference, prompt, steps, context=context)
    every = len(reference.states) > 1 or reference.steps == 0
    try:
        got = trace(
            candidate,
            reference.prompt,
            forced=reference.tokens,
            every_state=every,
            context=reference.context,
        )
    except StepFailed as exc:
        inf = float("inf")
        return RolloutResult(reference.steps, [], inf, None, inf, False, str(exc))
    return judge(reference, got, atol, rtol)
