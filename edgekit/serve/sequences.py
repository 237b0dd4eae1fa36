"""Recurrent state per sequence on the server, as Triton's sequence batcher keeps it.

A client drives a recurrent bundle with `sequence_id`, `sequence_start` and `sequence_end` request
parameters and sends tokens only; the state lives here between its requests. `sequence_start`
begins a sequence from zero state (replacing one with the same id), `sequence_end` frees it after
that request, and a sequence idle for `idle_timeout` seconds is evicted (its client may have died).
At most `max_live` sequences exist at once: one more is refused (HTTP 429) rather than evicting a
live one. Requests of one sequence run in arrival order. Requests of different sequences are
batched as stateless ones are (batching.py): their tokens and states are stacked along the batch
axis into one call and split back, so 16 sequences stepping together cost one batched step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.errors import InputError
from edgekit.runtimes.base import Backend
from edgekit.serve import fields
from edgekit.serve.batching import Batcher

log = logging.getLogger("edgekit.serve")


class SequencesFull(Exception):
    """No room for another live sequence (HTTP 429)."""


@dataclass
class Sequence:
    state: dict[str, np.ndarray]  # by state input name, e.g. "state_in.h": (L, B, H)
    batch: int
    last_used: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    context: dict[str, np.ndarray] = field(default_factory=dict)  # sent with sequence_start


def sequence_control(parameters: Mapping[str, Any]) -> tuple[Any, bool, bool]:
    """(sequence_id, start, end) from a request's parameters; an id of 0 or "" means none."""
    sid = parameters.get("sequence_id")
    if sid in (None, 0, ""):
        raise InputError(
            "this model is recurrent: give a sequence_id (with sequence_start on its first "
            "request), as Triton's sequence batcher expects"
        )
    if not isinstance(sid, (int, str)) or isinstance(sid, bool):
        raise InputError(f"sequence_id must be an integer or a string, got {sid!r}")
    start = fields.flag(parameters.get("sequence_start", False), "sequence_start")
    return sid, start, fields.flag(parameters.get("sequence_end", False), "sequence_end")


class SequenceStore:
    def __init__(
        self, backend: Backend, max_live: int, idle_timeout: float, batcher: Batcher
    ) -> None:
        self.backend, self.max_live, self.idle_timeout = backend, max_live, idle_timeout
        self.batcher = batcher  # stacks the calls of sequences that arrive together
        self.layout = backend.layout
        self.live: dict[Any, Sequence] = {}
        self.evicted = self.ended = self.refused = 0

    def inputs(self) -> list[str]:
        """What a client sends: the token input only (the state is kept here)."""
        return [self.layout.tokens.name]

    async def infer(self, feeds: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> Any:
        sid, start, end = sequence_control(parameters)
        name = self.layout.tokens.name
        tokens = feeds.get(name)
        context = {k: v for k, v in feeds.items() if k != name}
        if tokens is None or (context and not start) or not set(context) <= self.context_names:
            with_context = f", and {sorted(self.context_names)} with sequence_start"
            raise InputError(
                f"send only {name!r} to a sequence (its state is kept on the server"
                f"{with_context if self.context_names else ''}), got {sorted(feeds)}"
            )
        batch = tokens.shape[self.layout.token_axes[0]] if tokens.ndim == 2 else 0
        sequence = self._open(sid, start, batch, context)
        async with sequence.lock:
            if sequence.batch != batch:
                raise InputError(
                    f"sequence {sid!r} has batch {sequence.batch}; this request has {batch}"
                )
            run = {self.layout.tokens.name: tokens, **sequence.state, **sequence.context}
            out = await self.batcher.submit(run)  # checks the feeds first
            # copies: the rows are views of one batched call's outputs
            sequence.state = {k: v.copy() for k, v in self.layout.state_after(out).items()}
            sequence.last_used = time.monotonic()
        if end and self.live.get(sid) is sequence:
            del self.live[sid]
            self.ended += 1
        return {self.layout.logits.name: out[self.layout.logits.name]}

    @property
    def context_names(self) -> set[str]:
        return {spec.name for spec, _ in self.layout.context}

    def _open(self, sid: Any, start: bool, batch: int, context: Mapping[str, Any]) -> Sequence:
        if start:
            self.evict_idle()
            if sid not in self.live and len(self.live) >= self.max_live:
                self.refused += 1
                log.info("sequence %r refused: %d sequences are live", sid, len(self.live))
                raise SequencesFull(
                    f"{self.max_live} sequences are live, the most this server keeps; end one "
                    f"(sequence_end) or wait for an idle one to be evicted ({self.idle_timeout:g} s)"
                )
            if batch < 1:
                raise InputError(f"{self.layout.tokens.name} must be (batch, time) with batch >= 1")
            state = self.layout.zero_state(batch)
            given = self.layout.context_feeds(context, batch) if self.context_names else {}
            self.live[sid] = Sequence(state, batch, time.monotonic(), context=given)
        sequence = self.live.get(sid)
        if sequence is None:
            raise InputError(
                f"sequence {sid!r} is not live: start it with sequence_start; it may have ended "
                f"or been evicted after {self.idle_timeout:g} s idle"
            )
        sequence.last_used = time.monotonic()
        return sequence

    def evict_idle(self) -> int:
        """Drop sequences idle for longer than the timeout (not one with a request running)."""
        cutoff = time.monotonic() - self.idle_timeout
        stale = [s for s, q in self.live.items() if q.last_used < cutoff and not q.lock.locked()]
        for sid in stale:
            del self.live[sid]
        self.evicted += len(stale)
        if stale:
            log.info("evicted %d sequences idle for %g s", len(stale), self.idle_timeout)
        return len(stale)

    def stats(self) -> dict[str, int]:
        return {
            "live": len(self.live),
            "ended": self.ended,
            "evicted": self.evicted,
            "refused": self.refused,
        }
