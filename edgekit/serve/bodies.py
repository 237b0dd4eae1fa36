"""Reading request bodies within budgets: per request (size, time, JSON size) and per server (bytes
held at once, across every request being read or parsed).

A body is counted while it is read, so a chunked body with no Content-Length cannot exceed the
limit either. Answers that leave a body unread (413, 408, 503) close the connection, so the rest of
an oversize upload is not read and thrown away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from edgekit.errors import InputError

MAX_BODY = 1 << 30  # bytes: the most --max-body-mb may allow
MAX_JSON = 16 << 20  # bytes of JSON in one request: parsed, it takes ~10x that in Python objects
IN_FLIGHT = 1 << 30  # bytes of request bodies the server holds at once, over all requests
BODY_SECONDS = 60.0  # the whole body must arrive within this


class BodyRefused(Exception):
    """A body the server will not read: its status (413, 408 or 503) and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The client disconnected before its request was read; nobody is left to answer."""


class BodyBudget:
    """Bytes of request bodies held by the server at once (reserved as they arrive)."""

    def __init__(self, limit: int = IN_FLIGHT) -> None:
        self.limit, self.held, self.refused = limit, 0, 0

    @contextlib.contextmanager
    def holding(self) -> Any:
        taken = [0]

        def take(n: int) -> None:
            if self.held + n > self.limit:
                self.refused += 1
                raise BodyRefused(
                    503,
                    f"the server holds {self.held >> 20} MiB of request bodies, its limit; "
                    "retry shortly",
                )
            self.held += n
            taken[0] += n

        try:
            yield take
        finally:
            self.held -= taken[0]


async def read_body(stream: AsyncIterator[bytes], headers: Any, limit: int, take: Any) -> bytes:
    """The whole body of a request, or BodyRefused / InputError / ClientGone."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyRefused(413, f"the body is {declared} bytes, more than {limit}")
    if headers.get("content-encoding") in ("gzip", "deflate"):
        raise InputError("compressed request bodies are not supported; send them plain")
    chunks: list[bytes] = []

    async def collect() -> None:
        size = 0
        async for chunk in stream:  # counted while read: a chunked body has no length
            size += len(chunk)
            if size > limit:
                raise BodyRefused(413, f"the body is more than {limit} bytes")
            take(len(chunk))
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), BODY_SECONDS)
    except asyncio.TimeoutError:  # (TimeoutError itself from Python 3.11)
        got = sum(map(len, chunks))
        raise BodyRefused(
            408, f"the body did not arrive within {BODY_SECONDS:g} s ({got} bytes came)"
        ) from None
    except Exception as exc:
        if type(exc).__name__ == "ClientDisconnect":  # starlette's, not imported here
            raise ClientGone() from None
        raise
    body = b"".join(chunks)
    json_part = headers.get("inference-header-content-length")
    json_size = int(json_part) if json_part is not None and json_part.isdigit() else len(body)
    if json_size > MAX_JSON:
        raise BodyRefused(
            413,
            f"the request's JSON is {json_size} bytes, more than {MAX_JSON}; send large tensors "
            "as binary data (tritonclient: binary_data=True)",
        )
    return body
