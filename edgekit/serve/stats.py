"""Per-model statistics in Triton's format (`GET /v2/models[/NAME]/stats`), so Triton's tools read
them: perf_analyzer reports the server side of its measurements from these counters.

As Triton counts them: `inference_count` is rows served and `execution_count` model calls;
`inference_stats.success` counts requests and their whole time in the server's model path,
`queue` the wait before their call started, `compute_input` / `compute_infer` / `compute_output`
the call's input stacking, the model itself and the output split (each request in a call is
charged the call's time); `batch_stats` counts calls per batch size.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PHASES = ("compute_input", "compute_infer", "compute_output")


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns * count

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class Call:
    """The timestamps (time.perf_counter_ns) of one model call."""

    arrivals: list[int]  # when each request in it was submitted
    rows: int
    start: int = 0  # the call began stacking its inputs
    infer: int = 0  # the model started
    output: int = 0  # the model returned
    end: int = 0  # every request has its rows

    @staticmethod
    def now() -> int:
        return time.perf_counter_ns()


@dataclass
class ModelStats:
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    phases: dict[str, Duration] = field(default_factory=lambda: {p: Duration() for p in PHASES})
    batches: dict[int, dict[str, Duration]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, call: Call) -> None:
        """A call that served every request in it."""
        spans = {
            "compute_input": call.infer - call.start,
            "compute_infer": call.output - call.infer,
            "compute_output": call.end - call.output,
        }
        requests = len(call.arrivals)
        with self.lock:
            self.inference_count += call.rows
            self.execution_count += 1
            self.last_inference_ms = int(time.time() * 1000)
            for arrival in call.arrivals:
                self.success.add(call.end - arrival)
                self.queue.add(call.start - arrival)
            per_batch = self.batches.setdefault(call.rows, {p: Duration() for p in PHASES})
            for phase, ns in spans.items():
                self.phases[phase].add(ns, requests)
                per_batch[phase].add(ns)

    def failed(self, arrivals: Iterable[int]) -> None:
        end = Call.now()
        with self.lock:
            for arrival in arrivals:
                self.fail.add(end - arrival)

    def to_json(self, name: str) -> dict[str, Any]:
        with self.lock:
            zero = Duration().to_json()
            return {
                "name": name,
                "version": "1",
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {
                    "success": self.success.to_json(),
                    "fail": self.fail.to_json(),
                    "queue": self.queue.to_json(),
                    **{p: d.to_json() for p, d in self.phases.items()},
                    "cache_hit": zero,
                    "cache_miss": zero,
                },
                "response_stats": {},
                "batch_stats": [
                    {"batch_size": size, **{p: d.to_json() for p, d in phases.items()}}
                    for size, phases in sorted(self.batches.items())
                ],
                "memory_usage": [],
            }
