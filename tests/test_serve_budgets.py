"""The server's budgets, one class of resource at a time: prompt, tokens and stop strings per
generate request; generations at once (429); a generation stops when its client leaves and a stream
nobody reads is dropped; body size, JSON size, body time and bytes held by the whole server; long
prompts prefilled in bounded pieces. Loopback only; every wait bounded."""

from __future__ import annotations

import http.client
import importlib.util
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_serve import start_server

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn")),
    reason="needs the serve extra (in the dev extra)",
)


@pytest.fixture(scope="module")
def served(tiny_bundles: dict[str, Path]) -> Iterator[str]:
    bundles = [(n, tiny_bundles[n]) for n in ("linear", "charlm")]
    url, _, server = start_server(
        bundles, max_prompt=64, max_tokens=1_000_000, max_generations=2, sequence_timeout_s=1.0,
        max_body_mb=1,
    )  # fmt: skip
    yield url
    server.should_exit = True


def post(url: str, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, body=body)
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None, dict(response.headers)
    finally:
        conn.close()


def generations(url: str) -> dict[str, int]:
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", "/v2/models/stats")
        return json.loads(conn.getresponse().read())["generations"]
    finally:
        conn.close()


def wait_for(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def raw_request(url: str, path: str, body: bytes) -> socket.socket:
    host, port = url.split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock


def generate_body(prompt: str = "the ", **params: Any) -> bytes:
    return json.dumps({"text_input": prompt, "parameters": params}).encode()


BAD_GENERATIONS = [
    (generate_body("e" * 65), "text_input has 65 characters, more than this server takes "
                              "(--max-prompt 64)"),
    (generate_body(max_tokens=1_000_001), "max_tokens must be an integer 0 .. 1000000"),
    (generate_body(stop=["x"] * 17), "stop: at most 16 strings of at most 256 characters"),
    (generate_body(stop="x" * 257), "stop: at most 16 strings"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), BAD_GENERATIONS)
def test_generate_requests_over_the_budgets_are_400s(
    served: str, body: bytes, message: str
) -> None:
    for route in ("generate", "generate_stream"):
        status, doc, _ = post(served, f"/v2/models/charlm/{route}", body)
        assert status == 400 and message in doc["error"], doc


def test_generations_beyond_the_limit_are_429s_and_a_left_generation_stops(served: str) -> None:
    before = generations(served)
    long = generate_body(max_tokens=1_000_000, temperature=1.0)
    held = [raw_request(served, "/v2/models/charlm/generate", long) for _ in range(2)]
    wait_for(lambda: generations(served)["running"] == 2)
    status, doc, _ = post(served, "/v2/models/charlm/generate", generate_body(max_tokens=3))
    assert status == 429 and "2 generations are running" in doc["error"]
    for sock in held:  # the clients leave: their generations stop long before a million tokens
        sock.close()
    wait_for(lambda: generations(served)["running"] == 0, seconds=20)
    after = generations(served)
    assert after["client_left"] - before["client_left"] == 2
    assert after["refused"] - before["refused"] == 1
    status, doc, _ = post(served, "/v2/models/charlm/generate", generate_body(max_tokens=3))
    assert status == 200 and len(doc["text_output"]) <= 3


def test_a_stream_nobody_reads_is_dropped(served: str) -> None:
    before = generations(served)["stalled"]
    sock = raw_request(served, "/v2/models/charlm/generate_stream", generate_body(max_tokens=10**6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:  # never read: once the buffers are full, --sequence-timeout (1 s) later it is dropped
        wait_for(lambda: generations(served)["stalled"] > before, seconds=60)
        wait_for(lambda: generations(served)["running"] == 0)
    finally:
        sock.close()


def test_a_body_over_max_body_mb_is_a_413_and_the_connection_closes(served: str) -> None:
    host, port = served.split(":")
    size = (1 << 20) + 1
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # refused on the declared length, before a byte of the body is read
        head = f"POST /v2/models/linear/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(4096):  # the server closes the connection after answering
            answer += chunk
    text = answer.decode().lower()
    assert text.startswith("http/1.1 413") and "connection: close" in text
    assert f"the body is {size} bytes, more than {1 << 20}" in text


def test_json_bodies_are_bounded_apart_from_binary_data(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from edgekit.serve import bodies

    async def read(body: bytes, headers: dict[str, str]) -> bytes:
        async def stream() -> Any:
            yield body

        return await bodies.read_body(stream(), headers, 1 << 30, lambda n: None)

    monkeypatch.setattr(bodies, "MAX_JSON", 100)
    with pytest.raises(bodies.BodyRefused, match="JSON is 101 bytes, more than 100; send large"):
        asyncio.run(read(b" " * 101, {}))
    # binary tensors after a small JSON header are not JSON
    assert len(asyncio.run(read(b" " * 1000, {"inference-header-content-length": "10"}))) == 1000


def test_the_server_wide_body_budget_refuses_with_503() -> None:
    from edgekit.serve.bodies import BodyBudget, BodyRefused

    budget = BodyBudget(limit=100)
    with budget.holding() as first:
        first(60)
        with budget.holding() as second, pytest.raises(BodyRefused) as refused:
            second(41)
        assert refused.value.status == 503 and budget.held == 60
    assert budget.held == 0 and budget.refused == 1


def test_a_body_that_does_not_arrive_in_time_is_a_408(
    served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekit.serve import bodies

    monkeypatch.setattr(bodies, "BODY_SECONDS", 0.5)  # read at each request
    host, port = served.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = "POST /v2/models/linear/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        sock.sendall(head.encode())
        received = b""
        while chunk := sock.recv(4096):  # the server closes the connection after answering
            received += chunk
    answer = received.decode()
    assert answer.startswith("HTTP/1.1 408") and "did not arrive within 0.5 s" in answer


def test_a_client_that_leaves_mid_body_is_not_an_error(
    served: str, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = served.split(":")
    with caplog.at_level(logging.WARNING, logger="edgekit.serve"):
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            head = "POST /v2/models/linear/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
            sock.sendall(head.encode() + b"{")
            time.sleep(0.2)
        status, _, _ = post(served, "/v2/models/linear/infer", b"{}")  # the server goes on
    assert status == 400
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]


@pytest.mark.parametrize("value", [0, -1, 10**9])
@pytest.mark.parametrize(
    "option", ["max_tokens", "max_prompt", "max_generations", "generation_threads", "max_body_mb"]
)
def test_budget_options_out_of_range_are_refused(option: str, value: int) -> None:
    from edgekit.errors import InputError
    from edgekit.serve.models import ServeOptions

    flag = "--" + option.replace("_", "-")
    with pytest.raises(InputError, match=f"{flag} must be 1 .. "):
        ServeOptions(**{option: value}).check()  # type: ignore[arg-type]


def test_a_long_prompt_is_prefilled_in_pieces_with_the_same_result(
    tiny_bundles: dict[str, Path],
) -> None:
    from edgekit.runtimes.loader import load
    from edgekit.runtimes.stepper import PREFILL_CHUNK, HostStepper

    generator = load(tiny_bundles["charlm"])
    backend, layout = generator.backend, generator.backend.layout
    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(generator.vocab), (2, 2 * PREFILL_CHUNK + 5))  # three pieces
    whole = backend.run({layout.tokens.name: layout.token_feed(ids), **layout.zero_state(2)})
    expected = layout.last_logits(whole[layout.logits.name])
    for stepper in (backend.stepper(2), HostStepper(backend, 2)):
        got = stepper.prefill(ids)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        for name, value in layout.state_after(whole).items():
            np.testing.assert_allclose(stepper.get_state()[name], value, rtol=1e-4, atol=1e-5)
