"""Dynamic batching: requests that arrive together run as one call.

Each request's feeds are checked against the model's contract on arrival (a bad request fails alone,
with a 400). One call runs at a time per model; requests that arrive while it runs queue up, and the
next call takes every queued request whose non-batch shapes agree with the first, up to `max_batch`
rows. So an idle server answers a lone request at once, and a busy one batches by itself. With
`max_wait` > 0 the first request of a call also waits up to that long for others (larger batches
for more latency, as Triton's max_queue_delay). Each request gets its own rows of every output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.bundle.io import BATCH
from edgekit.errors import InputError
from edgekit.runtimes.base import Backend
from edgekit.serve.stats import Call, ModelStats


@dataclass
class _Pending:
    feeds: dict[str, np.ndarray]
    rows: int
    key: tuple[Any, ...]  # the non-batch shapes: requests with equal keys can share a call
    done: asyncio.Future[dict[str, np.ndarray]] = field(repr=False)
    arrival: int = field(default_factory=Call.now)


class Batcher:
    def __init__(
        self, backend: Backend, max_batch: int, max_wait: float, executor: Executor
    ) -> None:
        self.backend, self.max_batch, self.max_wait = backend, max_batch, max_wait
        self.executor = executor
        contract = backend.contract
        batch = contract.role_axis(BATCH)
        # the batch axis of every input and output (None: the tensor has no batch axis)
        self.in_axes = {t.name: _index(t.shape, batch) for t in contract.inputs}
        self.out_axes = {t.name: _index(t.shape, batch) for t in contract.outputs}
        self.batching = batch is not None and all(a is not None for a in self.in_axes.values())
        self.queue: asyncio.Queue[_Pending] | None = None
        self.worker: asyncio.Task[None] | None = None
        self.calls = self.requests = 0  # statistics: backend calls and the requests they served
        self.stats = ModelStats()  # the same, timed, as Triton reports them

    async def submit(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrival = Call.now()
        self.backend.check_feeds(feeds)  # a bad request fails here, alone
        feeds = dict(feeds)
        if not self.batching:
            return await self._run_alone(feeds, arrival, 1)
        first, axis = next(iter(self.in_axes.items()))
        assert axis is not None  # self.batching: every input has a batch axis
        rows = feeds[first].shape[axis]
        if rows > self.max_batch:  # as Triton refuses a batch over max_batch_size
            raise InputError(
                f"{first}: a batch of {rows} rows is more than this model's max_batch_size "
                f"{self.max_batch} (--max-batch); split it"
            )
        if rows == self.max_batch:
            return await self._run_alone(feeds, arrival, rows)
        key = tuple((n, _without(a.shape, self.in_axes[n])) for n, a in sorted(feeds.items()))
        loop = asyncio.get_running_loop()
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.worker = loop.create_task(self._gather())
        pending = _Pending(feeds, rows, key, loop.create_future(), arrival)
        await self.queue.put(pending)
        return await pending.done

    async def _run_alone(
        self, feeds: dict[str, np.ndarray], arrival: int, rows: int
    ) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        self.calls, self.requests = self.calls + 1, self.requests + 1
        call = Call([arrival], rows)
        call.start = call.infer = Call.now()
        try:
            out = await loop.run_in_executor(self.executor, self.backend.run, feeds, False)
        except Exception:
            self.stats.failed(call.arrivals)
            raise
        call.output = call.end = Call.now()
        self.stats.record(call)
        return out

    async def _gather(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        held: _Pending | None = None  # a request that did not fit the last batch starts the next
        while True:
            first = held or await self.queue.get()
            held, batch, rows = None, [first], first.rows
            deadline = loop.time() + self.max_wait
            while rows < self.max_batch:
                try:
                    if self.queue.empty() and self.max_wait > 0:
                        timeout = deadline - loop.time()
                        item = await asyncio.wait_for(self.queue.get(), max(timeout, 0))
                    else:
                        item = self.queue.get_nowait()
                except (asyncio.TimeoutError, asyncio.QueueEmpty):  # (TimeoutError from 3.11)
                    break
                if item.key != first.key or rows + item.rows > self.max_batch:
                    held = item
                    break
                batch.append(item)
                rows += item.rows
            await self._run(batch)

    async def _run(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        call = Call([p.arrival for p in batch], sum(p.rows for p in batch))
        call.start = Call.now()
        feeds = {
            name: np.concatenate([p.feeds[name] for p in batch], axis=axis)
            for name, axis in self.in_axes.items()
        }
        self.calls, self.requests = self.calls + 1, self.requests + len(batch)
        call.infer = Call.now()
        try:
            out = await loop.run_in_executor(self.executor, self.backend.run, feeds, False)
        except Exception as exc:  # the call failed: every request in it gets the reason
            self.stats.failed(call.arrivals)
            for p in batch:
                if not p.done.done():
                    p.done.set_exception(exc)
            return
        call.output = Call.now()
        start = 0
        for p in batch:
            rows = slice(start, start + p.rows)
            start += p.rows
            part = {}
            for name, value in out.items():
                axis = self.out_axes.get(name)
                if axis is None:
                    part[name] = value
                else:
                    index: list[slice] = [slice(None)] * value.ndim
                    index[axis] = rows
                    part[name] = value[tuple(index)]
            if not p.done.done():  # its client may have gone
                p.done.set_result(part)
        call.end = Call.now()
        self.stats.record(call)


def _without(shape: tuple[int, ...], axis: int | None) -> tuple[int, ...]:
    """`shape` without its batch axis: what must agree for requests to share a call."""
    return shape if axis is None else shape[:axis] + shape[axis + 1 :]


def _index(shape: tuple[Any, ...], dim: str | None) -> int | None:
    return shape.index(dim) if dim is not None and dim in shape else None
