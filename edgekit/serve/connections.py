"""What uvicorn leaves unbounded by default: how long a client may take to send a request's head,
and how many connections are served at once.

A client that sends its request line and headers a byte at a time holds a connection, and the
memory behind it, for as long as it likes: uvicorn's h11 protocol has no deadline for the head
(its keep-alive timer stops at the first byte of the next request). `HeadTimedH11` gives every
head `header_timeout_s` seconds, counted from the connection (or the end of the previous response)
to the head's last byte, then closes the connection, as nginx's client_header_timeout does; the
body has its own deadline (serve/bodies.py). uvicorn's limit_concurrency answers 503 once
`max_connections` connections (or as many running requests) are open.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from edgekit.serve.models import ServeOptions


class HeadTimedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head (class attribute)."""

    header_timeout_s = 10.0
    _deadline: asyncio.TimerHandle | None = None
    _timed: Any = None  # the request cycle the deadline was armed before

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is not None and self.cycle is not self._timed:  # a head arrived
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        waiting = self.cycle is None or self.cycle.response_complete  # not a pipelined request
        if waiting and not self.transport.is_closing() and self._deadline is None:
            self._arm()  # the next request's head, on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._timed = self.cycle
        self._deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.logger.info(
                "closed a connection whose request head took over %gs", self.header_timeout_s
            )
            self.transport.close()


def server_settings(options: ServeOptions) -> dict[str, Any]:
    """uvicorn Config keywords for `options`: the head deadline, the connection limit, and a stop
    that open streams and slow clients do not hold for more than 5 s."""
    timed = type("HeadTimedH11", (HeadTimedH11,), {"header_timeout_s": options.header_timeout_s})
    return {
        "http": timed,
        "limit_concurrency": options.max_connections,
        "timeout_graceful_shutdown": 5,
    }
