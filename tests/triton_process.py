"""A real Triton Inference Server for one test: started on model repositories, waited for until
the named models are ready, stopped afterwards (EDGEKIT_TRITONSERVER, EDGEKIT_TRITON_BACKENDS)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.test_triton_server import START_S, _free_port, _ready


@contextlib.contextmanager
def running_triton(repositories: list[Path], models: list[str], log: Path) -> Iterator[str]:
    """Yields HOST:PORT once every model in `models` is ready; fails with the log's tail if the
    server exits or does not get there within START_S."""
    port = _free_port()
    command = [os.environ["EDGEKIT_TRITONSERVER"],
               *(f"--model-repository={r}" for r in repositories),
               "--http-address=127.0.0.1", f"--http-port={port}", "--allow-grpc=false",
               "--allow-metrics=false"]  # fmt: skip
    if os.environ.get("EDGEKIT_TRITON_BACKENDS"):
        command.append(f"--backend-directory={os.environ['EDGEKIT_TRITON_BACKENDS']}")
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while not all(_ready(url, m) for m in models):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
