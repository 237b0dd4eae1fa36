"""Abusive clients of `edgekit serve`, one kind per class of attack, and a good client that times
its own requests while they run. Used by the load test (tests/test_serve_under_abuse.py) and its
benchmark (benchmarks/hostile_load.py). Loopback only; every loop is bounded in count and time.

Raw sockets and http.client, not tritonclient: an abusive client does what no library would (sends
headers byte by byte, never reads, leaves mid-request).
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    classifier: str  # a model name with an "image" (1, C, H, W) input
    image_shape: tuple[int, ...]
    generator: str  # a recurrent model with a vocabulary
    prompt_char: str  # a character in its vocabulary
    max_tokens: int = 4096  # the most the server generates per request (its --max-tokens)

    def connection(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def post(self, path: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
        conn = self.connection(timeout)
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def raw(self, timeout: float = 30.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)


def request_bytes(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


@dataclass
class Tally:
    """What one abusive client got back: HTTP statuses (or what went wrong) by count."""

    kind: str
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: Any) -> None:
        self.outcomes[str(outcome)] += 1

    def server_errors(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k.startswith("5"))


def _malformed_bodies(t: Target) -> list[tuple[str, bytes]]:
    infer, gen = f"/v2/models/{t.classifier}/infer", f"/v2/models/{t.generator}/generate"
    tensor = {"name": "image", "datatype": "FP32", "shape": [1, 2]}
    return [
        (infer, b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
        (infer, b'{"inputs": [], "id": ' + b"9" * 5000 + b"}"),
        (
            infer,
            json.dumps({"inputs": [{**tensor, "shape": [2**40, 2**40], "data": [1]}]}).encode(),
        ),
        (infer, json.dumps({"inputs": [{**tensor, "data": [1e39, 1.0]}]}).encode()),
        (
            infer,
            b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [NaN]}]}',
        ),
        (infer, json.dumps({"inputs": [{**tensor, "shape": [True, 2], "data": [1, 2]}]}).encode()),
        (infer, b"\xff\xfe not json"),
        (gen, json.dumps({"text_input": 5}).encode()),
        (gen, json.dumps({"text_input": "a", "parameters": {"temperature": "hot"}}).encode()),
        (gen, json.dumps({"text_input": "a", "parameters": {"stop": [1]}}).encode()),
        (gen, json.dumps({"text_input": "a", "parameters": {"max_tokens": 10**30}}).encode()),
    ]


def malformed(t: Target, stop: threading.Event, deadline: float, tally: Tally) -> None:
    """Class 1-2: a flood of malformed requests, one after another."""
    bodies = _malformed_bodies(t)
    for i in range(100_000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        path, body = bodies[i % len(bodies)]
        tally.add(t.post(path, body)[0])


def oversized(t: Target, stop: threading.Event, deadline: float, tally: Tally) -> None:
    """Class 3: chunked bodies with no Content-Length, sent until the server answers."""
    chunk = b"0" * (1 << 20)
    for _ in range(1000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        with t.raw() as sock:
            head = (f"POST /v2/models/{t.classifier}/infer HTTP/1.1\r\nHost: x\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            sock.sendall(head.encode())
            try:
                for _ in range(1024):  # at most 1 GiB
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                tally.add("sent 1 GiB unrefused")
            except OSError:  # the server answered and closed
                pass
            tally.add(_status_of(sock))


def _status_of(sock: socket.socket) -> str:
    try:
        line = sock.recv(64).split(b"\r\n", 1)[0].decode(errors="replace")
        return line.split(" ")[1] if line.startswith("HTTP/") else f"no answer {line!r}"
    except OSError as exc:
        return f"connection {type(exc).__name__}"


def slow_headers(t: Target, stop: threading.Event, deadline: float, tally: Tally) -> None:
    """Slowloris: 50 connections, each sending its request a byte at a time, never finishing."""
    socks = [t.raw(timeout=5) for _ in range(50)]
    text = request_bytes(f"/v2/models/{t.classifier}/infer", b"{" * 10_000)
    try:
        for i in range(10_000):
            if stop.is_set() or time.monotonic() > deadline or i >= len(text):
                return
            for sock in socks:
                try:
                    sock.sendall(text[i : i + 1])
                except OSError:
                    tally.add("closed by the server")
            time.sleep(0.05)
    finally:
        for sock in socks:
            sock.close()


def unread_streams(t: Target, stop: threading.Event, deadline: float, tally: Tally) -> None:
    """Class 4: 40 generate_stream requests for the most tokens allowed, never read."""
    params = {"max_tokens": t.max_tokens, "temperature": 1.0}
    body = json.dumps({"text_input": t.prompt_char * 8, "parameters": params}).encode()
    socks = []
    try:
        for _ in range(40):
            sock = t.raw()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(request_bytes(f"/v2/models/{t.generator}/generate_stream", body))
            socks.append(sock)
        tally.add(f"{len(socks)} streams opened")
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for sock in socks:
            sock.close()


def abandoned_generations(t: Target, stop: threading.Event, deadline: float, tally: Tally) -> None:
    """Class 4: /generate calls for the most tokens allowed, whose clients leave at once; 8 at a
    time."""
    params = {"max_tokens": t.max_tokens, "temperature": 1.0}
    body = json.dumps({"text_input": t.prompt_char * 8, "parameters": params}).encode()
    for _ in range(1000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        for _ in range(8):
            with t.raw() as sock:
                sock.sendall(request_bytes(f"/v2/models/{t.generator}/generate", body))
        tally.add("8 left")
        time.sleep(0.5)


def huge_prompts(t: Target, stop: threading.Event, deadline: float, tally: Tally) -> None:
    """Class 4: 1 MB prompts."""
    body = json.dumps({"text_input": t.prompt_char * (1 << 20), "parameters": {"max_tokens": 1}})
    for _ in range(1000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        tally.add(t.post(f"/v2/models/{t.generator}/generate", body.encode())[0])


def sequence_hogs(t: Target, stop: threading.Event, deadline: float, tally: Tally) -> None:
    """Class 4: sequences opened with many rows and never ended, until the server says no."""
    for i in range(100_000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        rows = 1 << (i % 17)  # 1 .. 65536 rows
        tokens = {"name": "tokens", "datatype": "INT64", "shape": [rows, 1], "data": [0] * rows}
        params = {"sequence_id": f"hog-{i}", "sequence_start": True}
        body = json.dumps({"inputs": [tokens], "parameters": params}).encode()
        tally.add(t.post(f"/v2/models/{t.generator}/infer", body)[0])


def subnormal_sampling(t: Target, stop: threading.Event, deadline: float, tally: Tally) -> None:
    """Class 6: sampling with a subnormal temperature (must not come back as NaN picks)."""
    params = {"max_tokens": 20, "temperature": 1e-320, "seed": 1}
    body = json.dumps({"text_input": t.prompt_char * 4, "parameters": params}).encode()
    for _ in range(10_000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        tally.add(t.post(f"/v2/models/{t.generator}/generate", body)[0])


ABUSERS: dict[str, Callable[[Target, threading.Event, float, Tally], None]] = {
    "malformed": malformed,
    "oversized": oversized,
    "slow_headers": slow_headers,
    "unread_streams": unread_streams,
    "abandoned_generations": abandoned_generations,
    "huge_prompts": huge_prompts,
    "sequence_hogs": sequence_hogs,
    "subnormal_sampling": subnormal_sampling,
}


@dataclass
class GoodClient:
    """One request at a time of three kinds (an image, a short seeded generation, three token steps
    of its sequence), each compared with the answer the idle server gave. Its sequence is opened
    before the abuse starts and restarted (sequence_start on the same id) each time, so it keeps
    its slot: a full server refuses new sequences (429), not live ones."""

    target: Target
    latencies: dict[str, list[float]] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    expected: dict[str, Any] = field(default_factory=dict)

    def requests(self) -> dict[str, Callable[[], Any]]:
        t = self.target
        n = 1
        for d in t.image_shape:
            n *= d
        image = {"name": "image", "datatype": "FP32", "shape": list(t.image_shape),
                 "data": [((i * 37) % 101) / 101 for i in range(n)]}  # fmt: skip
        image_body = json.dumps({"inputs": [image]}).encode()
        params = {"max_tokens": 20, "temperature": 0.8, "seed": 7}
        gen_body = json.dumps({"text_input": t.prompt_char * 3, "parameters": params}).encode()

        def classify() -> Any:
            return self._ok(t.post(f"/v2/models/{t.classifier}/infer", image_body))["outputs"]

        def generate() -> Any:
            return self._ok(t.post(f"/v2/models/{t.generator}/generate", gen_body))["text_output"]

        def sequence() -> Any:  # one sequence id, restarted each time: it holds its slot
            logits = []
            for step in range(3):
                tokens = {"name": "tokens", "datatype": "INT64", "shape": [1, 1], "data": [step]}
                params = {"sequence_id": "good", "sequence_start": step == 0}
                body = json.dumps({"inputs": [tokens], "parameters": params}).encode()
                logits.append(self._ok(t.post(f"/v2/models/{t.generator}/infer", body)))
            return [[o["data"] for o in doc["outputs"]] for doc in logits]

        return {"classify": classify, "generate": generate, "sequence": sequence}

    @staticmethod
    def _ok(answer: tuple[int, bytes]) -> Any:
        status, body = answer
        if status != 200:
            raise AssertionError(f"HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def learn(self) -> None:
        """The idle server's answers, which later answers must match."""
        self.expected = {name: call() for name, call in self.requests().items()}

    def run(self, rounds: int, deadline: float) -> None:
        calls = self.requests()
        for _ in range(rounds):
            for name, call in calls.items():
                if time.monotonic() > deadline:
                    return
                start = time.perf_counter()
                try:
                    got = call()
                except Exception as exc:  # a refusal or a timeout: recorded, the run goes on
                    self.wrong.append(f"{name}: {exc}")
                    continue
                self.latencies.setdefault(name, []).append(time.perf_counter() - start)
                if not _close(got, self.expected[name]):
                    self.wrong.append(f"{name}: answer differs from the idle server's")

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, values in self.latencies.items():
            ordered = sorted(values)
            out[name] = {
                "count": len(values),
                "median_ms": statistics.median(values) * 1e3,
                "max_ms": ordered[-1] * 1e3,
            }
        return out


def _close(a: Any, b: Any, tol: float = 1e-4) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= tol * (1 + abs(float(b)))
    return bool(a == b)


def under_abuse(
    target: Target, kinds: list[str], seconds: float, rounds: int = 1000
) -> tuple[GoodClient, list[Tally]]:
    """Run the good client for `seconds` while one thread per abusive kind runs; every thread is
    stopped and joined before returning (bounded by `seconds` plus their socket timeouts)."""
    good = GoodClient(target)
    good.learn()
    stop, deadline = threading.Event(), time.monotonic() + seconds
    tallies = [Tally(kind) for kind in kinds]
    threads = [
        threading.Thread(target=ABUSERS[k], args=(target, stop, deadline, tally), daemon=True)
        for k, tally in zip(kinds, tallies, strict=True)
    ]
    for thread in threads:
        thread.start()
    time.sleep(min(1.0, seconds / 4))  # let the abuse take hold first
    try:
        good.run(rounds, deadline)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    return good, tallies
