"""The timing harness: warm-up, interleaved rounds, GC paused, perf_counter_ns per iteration."""

from __future__ import annotations

import gc
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgekit.bench.cases import Case
from edgekit.errors import InputError
from edgekit.timing import interleaved_medians as interleaved_medians  # moved; re-exported

MIN_SAMPLES = 10  # fewer than this per case gives no meaningful p90/p99
log = logging.getLogger("edgekit.bench")


@dataclass(frozen=True)
class Budget:
    warmup: int | None = 20  # iterations per case before timing
    warmup_s: float | None = None  # or: seconds of warm-up per case
    iters: int | None = 200  # timed iterations per case
    duration_s: float | None = None  # or: seconds of timing per case
    rounds: int = 5  # cases are interleaved round by round, so drift hits every backend alike

    def validate(self) -> None:
        for flag, value in (("--warmup", self.warmup), ("--iters", self.iters)):
            if value is not None and value < 0:
                raise InputError(f"{flag} must be >= 0, got {value}")
        for flag, secs in (("--warmup-s", self.warmup_s), ("--duration", self.duration_s)):
            if secs is not None and not secs > 0:
                raise InputError(f"{flag} must be a positive number of seconds, got {secs}")
        if self.iters is not None and self.duration_s is None and self.iters < MIN_SAMPLES:
            raise InputError(
                f"--iters {self.iters} is too few; at least {MIN_SAMPLES} samples are needed"
            )


def _time_once(fn: Callable[[], object]) -> int:
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0


def warm_up(case: Case, budget: Budget) -> float:
    """Run the warm-up; return the mean seconds per call it saw (at least one call is made)."""
    spent, calls = 0, 0
    deadline = budget.warmup_s if budget.warmup_s is not None else None
    target = budget.warmup if budget.warmup is not None else 20
    while True:
        spent += _time_once(case.call)
        calls += 1
        if (deadline is not None and spent / 1e9 >= deadline) or (
            deadline is None and calls >= target
        ):
            break
    return spent / calls / 1e9


def plan_iterations(case: Case, seconds_per_call: float, budget: Budget) -> int:
    """Timed calls of `case`: --iters, or as many as --duration allows, but never fewer than
    MIN_SAMPLES (a slow case, or a busy machine, runs over the duration, and says so); a duration
    shorter than one call is refused."""
    if budget.duration_s is None:
        return budget.iters or 0
    n = int(budget.duration_s / max(seconds_per_call, 1e-9))
    if n == 0:  # shorter than one call: a mistake, not a busy machine
        raise InputError(
            f"--duration {budget.duration_s:g} s collects only {n} samples of {case.backend} "
            f"{case.name} (~{seconds_per_call * 1e3:.3g} ms per call); at least {MIN_SAMPLES} are "
            f"needed: use --duration {MIN_SAMPLES * seconds_per_call * 1.5:.3g} or more"
        )
    if n < MIN_SAMPLES:
        log.warning(
            "--duration %g s holds only %d calls of %s %s (~%.3g ms per call): timing the "
            "minimum %d instead, about %.3g s",
            budget.duration_s, n, case.backend, case.name, seconds_per_call * 1e3,
            MIN_SAMPLES, MIN_SAMPLES * seconds_per_call,
        )  # fmt: skip
        return MIN_SAMPLES
    return n


def run_rounds(
    cases: list[Case],
    budget: Budget,
    progress: Callable[[int], None] | None = None,
    wall: dict[int, int] | None = None,
) -> dict[int, list[int]]:
    """Time every case; return samples (ns) by case index. Cases alternate within each round, in a
    new order each round.
    `wall`, when given, receives each case's wall time over its timed calls (ns)."""
    per_call = [warm_up(c, budget) for c in cases]
    totals = [plan_iterations(c, s, budget) for c, s in zip(cases, per_call, strict=True)]
    samples: dict[int, list[int]] = {i: [] for i in range(len(cases))}
    rounds = max(1, budget.rounds)
    gc.collect()
    gc.disable()
    try:
        shuffle = random.Random(0)  # seeded: the same orders every run
        for r in range(rounds):
            # each round in its own order, as Google Benchmark's random interleaving: a case
            # does not always follow the same case (whose spinning threads or evicted caches
            # would otherwise tilt one row the same way every round)
            order = list(range(len(cases)))
            shuffle.shuffle(order)
            for i in order:
                case = cases[i]
                share = totals[i] // rounds + (1 if r < totals[i] % rounds else 0)
                start = time.perf_counter_ns()
                for _ in range(share):
                    samples[i].append(_time_once(case.call))
                if wall is not None:
                    wall[i] = wall.get(i, 0) + time.perf_counter_ns() - start
                if progress is not None:
                    progress(1)  # one (case, round) done
    finally:
        gc.enable()
    return samples
