"""A good client of `edgekit serve` is answered correctly, within a stated latency, while abusive
clients of every kind run against the same server: malformed floods, oversize chunked uploads,
slow uploads, streams nobody reads, generations abandoned by their clients, 1 MB prompts,
sequence hoarders and subnormal sampling (tests/hostile.py). The server is the real command in its
own process; loopback only, every client bounded in count and time.

The latency bound detects starvation (before these limits, one kind of abuse made a good request
wait past its 30 s timeout); it is not a speed target. benchmarks/hostile_load.py records the
figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hostile import ABUSERS, Target, under_abuse

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn")),
    reason="needs the serve extra (in the dev extra)",
)
GOOD_LATENCY_S = 2.0  # the most one good request may take while the abuse runs
ABUSE_SECONDS = 12.0
STALL_S = 2  # --sequence-timeout: a stream nobody reads is dropped after this


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(
    tiny_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    port = free_port()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    command = [sys.executable, "-m", "edgekit", "serve", f"cnn={tiny_bundles['cnn']}",
               f"charlm={tiny_bundles['charlm']}", "--port", str(port),
               "--sequence-timeout", str(STALL_S), "--max-tokens", "50000",
               "--max-sequences", "16"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
    deadline = time.monotonic() + 60
    while True:
        try:
            get_json(port, "/v2")
            break
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
    try:
        yield port, process, log
    finally:
        process.terminate()
        process.wait(timeout=30)  # open streams do not hold a stopping server


def test_a_good_client_is_served_while_every_kind_of_abuse_runs(server: Any) -> None:
    port, process, log = server
    target = Target("127.0.0.1", port, "cnn", (1, 3, 32, 32), "charlm", "e", max_tokens=50_000)
    good, tallies = under_abuse(target, list(ABUSERS), ABUSE_SECONDS)

    assert not good.wrong, good.wrong[:5]
    summary = good.summary()
    assert set(summary) == {"classify", "generate", "sequence"}
    for name, figures in summary.items():
        assert figures["count"] >= 3, (name, figures)
        assert figures["max_ms"] <= GOOD_LATENCY_S * 1e3, (name, figures)

    by_kind = {t.kind: t for t in tallies}
    assert all(t.server_errors() == 0 for t in tallies), {t.kind: t.outcomes for t in tallies}
    assert set(by_kind["malformed"].outcomes) == {"400"}
    assert set(by_kind["oversized"].outcomes) == {"413"}
    assert set(by_kind["huge_prompts"].outcomes) == {"400"}
    assert set(by_kind["sequence_hogs"].outcomes) <= {"200", "400", "429"}
    assert by_kind["sequence_hogs"].outcomes["429"] > 0  # the sequence limit held
    assert set(by_kind["subnormal_sampling"].outcomes) == {"200"}

    # once the abusers are gone, nothing they started is still running
    deadline = time.monotonic() + 20
    while (running := get_json(port, "/v2/models/stats")["generations"])["running"]:
        assert time.monotonic() < deadline, running
        time.sleep(0.2)
    assert running["client_left"] > 0, running  # abandoned generations stopped early
    assert process.poll() is None
    text = log.read_text()
    assert "Traceback" not in text and "internal error" not in text, text[-2000:]
