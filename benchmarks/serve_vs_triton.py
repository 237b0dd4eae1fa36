"""`edgekit serve` against a real Triton Inference Server, both driven by Triton's perf_analyzer in
one run, on the same bundles: the CNN at 1, 4 and 16 concurrent requests, and the 2x256 LSTM
charlm as 20-token sequences (one token per request) at 1, 4 and 16 concurrent sequences, through
Triton's one-stream repository and its batched one (`edgekit triton --batch-sequences`).

    EDGEKIT_TRITONSERVER=... EDGEKIT_TRITON_BACKENDS=... EDGEKIT_PERF_ANALYZER=... \\
        .venv/bin/python -m benchmarks.serve_vs_triton [--ckpt runs/ckpt] [--seconds 2]

(`eval "$(../shared/triton/setup.sh $PWD/.venv/bin/python | tail -3)"` lays those out; see
.ci/run.) Servers, perf_analyzer and nothing else share the machine's cores, one server at a
time. Writes the "serve-vs-triton" section of benchmarks/RESULTS.md and
benchmarks/results/serve_vs_triton.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.quantize import checkpoint
from benchmarks.sections import replace_section

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 4, 16)
SEQUENCE_LENGTH = 20
# quick training at the zoo's default sizes: speed depends on the shapes, not on how well it learnt
MODELS = {
    "cnn": {"model": "cnn", "epochs": 1, "samples": 32},
    "charlm": {"model": "charlm", "cell": "lstm", "epochs": 1, "max_chars": 20000},
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.2)


def start_triton(repos: list[Path], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    command = [os.environ["EDGEKIT_TRITONSERVER"], *(f"--model-repository={r}" for r in repos),
               "--http-address=127.0.0.1", f"--http-port={port}", "--allow-grpc=false",
               "--allow-metrics=false"]  # fmt: skip
    if os.environ.get("EDGEKIT_TRITON_BACKENDS"):
        command.append(f"--backend-directory={os.environ['EDGEKIT_TRITON_BACKENDS']}")
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"127.0.0.1:{port}"
    _wait_ready(url, server, "Triton")
    return server, url


def start_edgekit(bundles: dict[str, Path]) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    args = [f"{name}={path}" for name, path in bundles.items()]
    command = [sys.executable, "-m", "edgekit", "serve", *args, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"127.0.0.1:{port}"
    _wait_ready(url, server, "edgekit serve")
    return server, url


def perf(
    url: str, model: str, concurrency: int, seconds: float, extra: list[str]
) -> dict[str, Any]:
    """perf_analyzer's figures at one concurrency: throughput, p50 and p99 (ms), errors."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "perf.csv"
        command = [os.environ["EDGEKIT_PERF_ANALYZER"], "-m", model, "-u", url, "-i", "http",
                   "--concurrency-range", f"{concurrency}:{concurrency}",
                   "--measurement-interval", str(int(seconds * 1000)), "--max-trials", "10",
                   "--stability-percentage", "25", "-f", str(report), *extra]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not report.exists():
            tail = (done.stdout + done.stderr).strip().splitlines()[-2:]
            return {"throughput": 0.0, "p50_ms": None, "p99_ms": None, "errors": " ".join(tail)}
        row = next(csv.DictReader(report.open()))
    return {
        "throughput": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1e3,
        "p99_ms": float(row["p99 latency"]) / 1e3,
        "errors": 0,
        "server_queue_ms": float(row["Server Queue"]) / 1e3,
        "server_compute_ms": float(row["Server Compute Infer"]) / 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, help="folder with cnn/ and charlm/ checkpoints")
    ap.add_argument("--seconds", type=float, default=2.0, help="perf_analyzer measurement window")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "serve_vs_triton")
    args = ap.parse_args()
    missing = [
        v for v in ("EDGEKIT_TRITONSERVER", "EDGEKIT_PERF_ANALYZER") if not os.environ.get(v)
    ]
    if missing:
        raise SystemExit(f"set {', '.join(missing)} (see this script's docstring)")
    from edgekit.exporters import bundle_from_checkpoint
    from edgekit.exporters.triton_repository import write_repository

    work = args.work
    bundles = {}
    for name, options in MODELS.items():
        ckpt = checkpoint(name, options, args.ckpt, work)
        bundles[name] = bundle_from_checkpoint(
            ckpt, work / "bundles" / name, force=True, steps=0
        ).path
    repos = work / "repos"
    write_repository(bundles["cnn"], repos / "cnn", "cnn", force=True)
    write_repository(bundles["charlm"], repos / "charlm", "charlm", force=True)  # one stream
    write_repository(bundles["charlm"], repos / "batched", "charlm_batched", 16, force=True,
                     batch_sequences=True)  # fmt: skip
    token_input = "tokens"
    sequences = ["--input-data", "zero", "--sequence-length", str(SEQUENCE_LENGTH),
                 "--sequence-id-range", "1:1000"]  # fmt: skip
    plans = {  # (server, model, perf_analyzer options)
        "cnn": [("edgekit serve", "cnn", []), ("Triton", "cnn", [])],
        "charlm": [
            ("edgekit serve", "charlm", ["--shape", f"{token_input}:1,1", *sequences]),
            ("Triton one-stream", "charlm", ["--shape", f"{token_input}:1,1", *sequences]),
            ("Triton batched", "charlm_batched", ["--shape", f"{token_input}:1", *sequences]),
        ],
    }
    rows: list[dict[str, Any]] = []
    for server_name in ("edgekit serve", "Triton"):
        if server_name == "Triton":
            server, url = start_triton([repos / "cnn", repos / "charlm", repos / "batched"],
                                       work / "triton.log")  # fmt: skip
        else:
            server, url = start_edgekit({n: bundles[n] for n in MODELS})
        try:
            for workload, runs in plans.items():
                for label, model, extra in runs:
                    if not label.startswith(server_name):
                        continue
                    for c in CONCURRENCY:
                        figures = perf(url, model, c, args.seconds, extra)
                        print(f"{workload:<7} {label:<18} c={c:<3} {figures}", flush=True)
                        rows.append({"workload": workload, "server": label, "concurrency": c,
                                     **figures})  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=60)
    write(rows, args)


def _ratio_rows(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    by = {(r["workload"], r["server"], r["concurrency"]): r for r in rows}
    for workload, peer in (("cnn", "Triton"), ("charlm", "Triton one-stream"),
                           ("charlm", "Triton batched")):  # fmt: skip
        for c in CONCURRENCY:
            ours, theirs = by.get((workload, "edgekit serve", c)), by.get((workload, peer, c))
            if not ours or not theirs or not theirs["throughput"] or not ours["p99_ms"]:
                continue
            tput = ours["throughput"] / theirs["throughput"]
            p99 = ours["p99_ms"] / theirs["p99_ms"]
            met = "met" if tput >= 0.8 and p99 <= 1.5 else "missed"
            out.append(f"| {workload} | {peer} | {c} | {tput:.2f}x | {p99:.2f}x | {met} |")
    return out


def write(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    import platform

    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cpu = f"{platform.machine()}, {os.cpu_count()} cores"
    lines = [
        "## Serving: `edgekit serve` vs a real Triton, driven by perf_analyzer",
        "",
        f"`python -m benchmarks.serve_vs_triton --seconds {args.seconds:g}` ({stamp}, {cpu}; "
        "Triton 2.51 with its onnxruntime backend on the CPU, perf_analyzer 2.60, HTTP, one server "
        "at a time sharing the cores with perf_analyzer). The CNN: one image per request. The "
        f"2x256 LSTM charlm: {SEQUENCE_LENGTH}-token sequences, one token per request, so its "
        "throughput is tokens/s. Triton one-stream: `edgekit triton` (the bundle's own graph, "
        "max_batch_size 0); Triton batched: `edgekit triton --batch-sequences --max-batch 16`.",
        "",
        "| workload | server | concurrency | throughput /s | p50 ms | p99 ms | server queue ms "
        "| server compute ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:

        def ms(v: Any) -> str:
            return "-" if v is None else f"{v:.2f}"

        lines.append(
            f"| {r['workload']} | {r['server']} | {r['concurrency']} | {r['throughput']:.0f} | "
            f"{ms(r['p50_ms'])} | {ms(r['p99_ms'])} | {ms(r.get('server_queue_ms'))} | "
            f"{ms(r.get('server_compute_ms'))} | {r['errors']} |"
        )
    lines += [
        "",
        "Goal: `edgekit serve` >= 0.8x the peer's throughput and p99 <= 1.5x, at every "
        "concurrency (ratios from this run).",
        "",
        "| workload | peer | concurrency | throughput ratio | p99 ratio | goal |",
        "|---|---|---|---|---|---|",
        *_ratio_rows(rows),
    ]
    replace_section(ROOT / "benchmarks" / "RESULTS.md", "serve-vs-triton", "\n".join(lines))
    out = ROOT / "benchmarks" / "results" / "serve_vs_triton.json"
    out.write_text(json.dumps({"created": stamp, "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
