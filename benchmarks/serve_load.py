"""Load through `edgekit serve` on loopback: the CNN at 1, 4 and 16 concurrent clients, and 16
concurrent generation sequences driven token by token.

    .venv/bin/python -m benchmarks.serve_load [--ckpt runs/ckpt] [--seconds 5]

The server is the real command (`edgekit serve`, a separate process); clients are unmodified
`tritonclient.http` clients, one per thread, in this process. Client and server share the machine's
cores, so the figures are for the pair. Writes the "serve" section of benchmarks/RESULTS.md and
benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quantize import checkpoint
from benchmarks.sections import replace_section

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = (1, 4, 16)
SEQUENCES = 16


def start_server(bundles: dict[str, Path]) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [f"{name}={path}" for name, path in bundles.items()]
    cmd = [sys.executable, "-m", "edgekit", "serve", *args, "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    url = f"127.0.0.1:{port}"
    import tritonclient.http as http

    deadline = time.monotonic() + 60
    while True:
        try:
            if http.InferenceServerClient(url).is_server_ready():
                return server, url
        except Exception:  # not listening yet
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("edgekit serve did not start")
        time.sleep(0.1)


def _input(name: str, array: np.ndarray) -> Any:
    import tritonclient.http as http
    from tritonclient.utils import np_to_triton_dtype

    tensor = http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return tensor


def _threads(count: int, work: Any) -> dict[str, float]:
    """Run `work(i, latencies)` on `count` threads: calls, calls per wall second, p50/p99 us."""
    latencies: list[list[float]] = [[] for _ in range(count)]
    threads = [threading.Thread(target=work, args=(i, latencies[i])) for i in range(count)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    every = [x for part in latencies for x in part]
    return {
        "calls": len(every),
        "per_s": len(every) / wall,
        "p50_us": float(np.percentile(every, 50)),
        "p99_us": float(np.percentile(every, 99)),
    }


def classify_load(url: str, image_shape: list[int], clients: int, seconds: float) -> dict[str, Any]:
    import tritonclient.http as http

    image = np.random.default_rng(0).random([1, *image_shape]).astype(np.float32)

    def work(_: int, out: list[float]) -> None:
        client = http.InferenceServerClient(url)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            client.infer("cnn", [_input("image", image)])
            out.append((time.perf_counter() - t0) * 1e6)

    return {"clients": clients, **_threads(clients, work)}


def sequence_load(url: str, prompt: np.ndarray, steps: int) -> dict[str, Any]:
    import tritonclient.http as http

    def work(i: int, out: list[float]) -> None:
        client = http.InferenceServerClient(url)
        sid = 1000 + i
        result = client.infer(
            "charlm", [_input("tokens", prompt[None, :])], sequence_id=sid, sequence_start=True
        )
        for k in range(steps):
            token = np.array([[result.as_numpy("logits")[0, -1].argmax()]], np.int64)
            t0 = time.perf_counter()
            result = client.infer(
                "charlm", [_input("tokens", token)], sequence_id=sid, sequence_end=k == steps - 1
            )
            out.append((time.perf_counter() - t0) * 1e6)

    return {"sequences": SEQUENCES, **_threads(SEQUENCES, work)}  # a call is one token


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=200, help="tokens per sequence")
    args = ap.parse_args()

    import edgekit
    from edgekit.exporters import bundle_from_checkpoint

    work = Path(tempfile.mkdtemp(prefix="edgekit-serve-load-"))
    options = {
        "cnn": {"model": "cnn", "epochs": 1, "samples": 64},
        "charlm-lstm": {"model": "charlm", "cell": "lstm", "epochs": 1, "max_chars": 40_000},
    }
    bundles = {}
    for name, opts in options.items():
        ckpt = checkpoint(name, opts, args.ckpt, work)
        bundles[name.split("-")[0]], _ = bundle_from_checkpoint(ckpt, work / name, steps=20)
    server, url = start_server(bundles)
    try:
        cnn = edgekit.load(bundles["cnn"])
        shape = [d for d in cnn.backend.contract.spec("image").shape[1:]]
        rows = [classify_load(url, shape, c, args.seconds) for c in CLIENTS]
        g = edgekit.load(bundles["charlm"])
        sequences = sequence_load(url, g.encode("The "), args.steps)
        t0 = time.perf_counter()  # the same 16 streams in-process, one batched call per step
        g.generate_batch(["The "] * SEQUENCES, args.steps, temperature=0)
        local = SEQUENCES * args.steps / (time.perf_counter() - t0)
    finally:
        server.terminate()
        server.wait(10)
    result = {
        "created": datetime.now(timezone.utc).isoformat(timespec="minutes"),
        "cores": os.cpu_count(),
        "classify": rows,
        "sequences": sequences,
        "local_generate_batch_tokens_per_s": local,
    }
    (ROOT / "benchmarks" / "results" / "serve.json").write_text(json.dumps(result, indent=1) + "\n")
    section = render(result)
    replace_section(ROOT / "benchmarks" / "RESULTS.md", "serve", section)
    print(section)


def render(result: dict[str, Any]) -> str:
    s = result["sequences"]
    lines = [
        "## Serving: `edgekit serve` on loopback",
        "",
        f"Generated by `.venv/bin/python -m benchmarks.serve_load` on {result['created']} "
        f"({result['cores']} cores shared by the server and its `tritonclient.http` clients, one "
        "thread per client; default server settings: up to 32 requests a call, batching what "
        "queues while a call runs).",
        "",
        "| cat/dog CNN, batch 1 per request | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for r in result["classify"]:
        lines.append(
            f"| {r['clients']} concurrent clients | {r['per_s']:.0f} | "
            f"{r['p50_us'] / 1e3:.2f} | {r['p99_us'] / 1e3:.2f} |"
        )
    lines += [
        "",
        f"| charlm 2x256 LSTM, {s['sequences']} concurrent sequences, one token per request | "
        "tokens/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| through the server | {s['per_s']:.0f} | {s['p50_us'] / 1e3:.2f} | "
        f"{s['p99_us'] / 1e3:.2f} |",
        f"| in-process `generate_batch` of the same 16 streams (reference) | "
        f"{result['local_generate_batch_tokens_per_s']:.0f} | - | - |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
