"""What uvicorn leaves unbounded, bounded by `edgekit serve`: a client that sends a request's head
a byte at a time is cut off after --header-timeout (a good client on a kept-alive connection is
not), and past --max-connections a request is answered 503. Loopback only; every loop is bounded
in count and time."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import pytest

from tests.test_serve import start_server


def trickle(url: str, head: bytes, every: float, seconds: float) -> float | None:
    """Send `head` one byte per `every` s for at most `seconds`; when the server closed the
    connection, how long after connecting (None: still open at the end)."""
    host, port = url.split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        for byte in head[: int(seconds / every)]:
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(every)
                if sock.recv(1024) == b"":
                    return time.monotonic() - start
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - start
    return None


@pytest.fixture(scope="module")
def served(tiny_bundles: dict[str, Path]):
    url, _, server = start_server([("linear", tiny_bundles["linear"])], header_timeout_s=1.0)
    yield url
    server.should_exit = True


HEAD = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"


def test_a_head_sent_a_byte_at_a_time_is_cut_off(served: str) -> None:
    closed = trickle(served, HEAD, every=0.1, seconds=8.0)
    assert closed is not None and 0.9 < closed < 3.0, closed


def test_a_kept_alive_client_that_then_dawdles_is_cut_off_too(served: str) -> None:
    host, port = served.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for _ in range(3):  # quick requests on one connection: each head well within the deadline
            conn.request("GET", "/v2/health/live")
            assert conn.getresponse().read() is not None
            time.sleep(0.5)
        conn.sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")  # then a head that never ends
        conn.sock.settimeout(4)
        start = time.monotonic()
        assert conn.sock.recv(1024) == b""
        assert time.monotonic() - start < 3.0
    finally:
        conn.close()


def test_past_max_connections_a_request_is_answered_503(tiny_bundles: dict[str, Path]) -> None:
    url, _, server = start_server([("linear", tiny_bundles["linear"])], max_connections=6)
    host, port = url.split(":")
    idle = [socket.create_connection((host, int(port)), timeout=2) for _ in range(6)]
    try:
        time.sleep(0.2)  # the server has accepted them
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/v2/health/live")
        assert conn.getresponse().status == 503
        conn.close()
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while True:  # once they are gone, served again
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/v2/health/live")
        status = conn.getresponse().status
        conn.close()
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    server.should_exit = True
    assert status == 200
