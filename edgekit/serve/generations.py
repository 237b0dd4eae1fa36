"""Where the server's text generations run: on their own threads, a few tokens at a time, only while
their client reads.

A generation is an iterator of characters (Generator.stream). It is advanced CHUNK tokens per call
on `threads` workers that inference never uses, so generations queue behind each other and not
behind (or in front of) infer requests. Each next chunk is computed only when the previous one has
been taken: a client that stops reading stops costing CPU, one that leaves is noticed between
chunks, and `max_running` generations (then HTTP 429) bound what is held at once. The workers take
the waiting chunk of the generation that has produced the fewest tokens first (least attained
service), so a short request is answered at once even while long ones run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

from edgekit.runtimes.decode import Generation

log = logging.getLogger("edgekit.serve")
CHUNK = 8  # tokens per worker call: ~1 ms on a 2x256 LSTM, small against a request's latency


class GenerationsFull(Exception):
    """No room for another generation (HTTP 429)."""


class Generations:
    def __init__(self, max_running: int, threads: int) -> None:
        self.max_running = max_running
        self.workers = Workers(threads)
        self.running = 0
        self.counts: Counter[str] = Counter()  # completed, client_left, stalled, refused

    async def chunks(
        self, generator: Any, prompt: str, options: Generation, context: Any = None
    ) -> AsyncGenerator[list[str], None]:
        """Lists of generated characters, in order. The first raises GenerationsFull when
        `max_running` generations are live, or InputError for a prompt the model cannot take."""
        if self.running >= self.max_running:
            self.counts["refused"] += 1
            log.info("generation refused: %d are running", self.running)
            raise GenerationsFull(
                f"{self.max_running} generations are running, the most this server runs at once "
                "(--max-generations); retry later"
            )
        self.running += 1  # before any await, so a burst of requests cannot overshoot the limit
        tokens = generator.stream(prompt, options=options, context=context or None)
        produced = 0
        try:
            while True:
                chunk = await self.workers.run(produced, _take, tokens, CHUNK)
                produced += len(chunk)
                if chunk:
                    yield chunk
                if len(chunk) < CHUNK:
                    self.counts["completed"] += 1
                    return
        finally:  # done, failed, or closed by a consumer whose client went away
            self.running -= 1

    def stats(self) -> dict[str, int]:
        return {"running": self.running, **{k: self.counts[k] for k in _COUNTED}}

    def shutdown(self) -> None:
        self.workers.stop()


class Workers:
    """Threads that run the waiting call of lowest priority first (ties: the earliest)."""

    def __init__(self, threads: int) -> None:
        self.waiting: queue.PriorityQueue[tuple[float, int, Any]] = queue.PriorityQueue()
        self.order = itertools.count()
        self.threads = [
            threading.Thread(target=self._work, name=f"edgekit-gen-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def run(self, priority: float, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.put((priority, next(self.order), (fn, args, loop, future)))
        return future

    def _work(self) -> None:
        while True:
            _, _, job = self.waiting.get()
            if job is None:
                return
            fn, args, loop, future = job
            if future.cancelled():  # its consumer went away while it waited
                continue
            try:
                result, error = fn(*args), None
            except Exception as exc:  # handed to the awaiting request
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the server's loop has closed
                return

    def stop(self) -> None:
        for _ in self.threads:  # ahead of every waiting call
            self.waiting.put((float("-inf"), next(self.order), None))


def _settle(future: asyncio.Future[Any], result: Any, error: Exception | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_COUNTED = ("completed", "client_left", "stalled", "refused")


def _take(tokens: Iterator[str], n: int) -> list[str]:
    return list(itertools.islice(tokens, n))
