"""Where the server's text generations run: on their own threads, a few tokens at a time, only while
their client reads.

A generation is an iterator of characters (Generator.stream). It is advanced CHUNK tokens per call
on a pool of `threads` workers that inference never uses, so generations queue behind each other
and not behind (or in front of) infer requests. Each next chunk is computed only when the previous
one has been taken: a client that stops reading stops costing CPU, one that leaves is noticed
between chunks, and `max_running` generations (then HTTP 429) bound what is held at once. Chunks
of all live generations take turns on the workers, so a short generation is not stuck behind long
ones.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from edgekit.runtimes.decode import Generation

CHUNK = 8  # tokens per worker call: ~1 ms on a 2x256 LSTM, small against a request's latency


class GenerationsFull(Exception):
    """No room for another generation (HTTP 429)."""


class Generations:
    def __init__(self, max_running: int, threads: int) -> None:
        self.max_running = max_running
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="edgekit-gen")
        self.running = 0
        self.counts: Counter[str] = Counter()  # completed, client_left, stalled, refused

    async def chunks(
        self, generator: Any, prompt: str, options: Generation
    ) -> AsyncGenerator[list[str], None]:
        """Lists of generated characters, in order. The first raises GenerationsFull when
        `max_running` generations are live, or InputError for a prompt the model cannot take."""
        if self.running >= self.max_running:
            self.counts["refused"] += 1
            raise GenerationsFull(
                f"{self.max_running} generations are running, the most this server runs at once "
                "(--max-generations); retry later"
            )
        self.running += 1  # before any await, so a burst of requests cannot overshoot the limit
        tokens = generator.stream(prompt, options=options)
        loop = asyncio.get_running_loop()
        try:
            while True:
                chunk = await loop.run_in_executor(self.executor, _take, tokens, CHUNK)
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
        self.executor.shutdown(wait=False, cancel_futures=True)


_COUNTED = ("completed", "client_left", "stalled", "refused")


def _take(tokens: Iterator[str], n: int) -> list[str]:
    return list(itertools.islice(tokens, n))
