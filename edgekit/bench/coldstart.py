"""Cold start and peak memory, measured for each backend alone in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_PROBE = """
import json, sys, time
from pathlib import Path
import edgekit.reference
from edgekit.bench.cases import build_cases
from edgekit.bundle.directory import Bundle
from edgekit.runtimes import registry

bundle, backend, threads = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
threads = int(threads) if threads != "none" else None
manifest = Bundle.read(bundle, verify=False).manifest
t0 = time.perf_counter()
entry = registry.get(backend)
handle = entry.open(bundle, manifest, registry.OpenOptions(threads=threads))
case = build_cases(backend, handle, manifest.contract, manifest.task, [1], entry.reference)[0]
case.call()
t1 = time.perf_counter()
# VmHWM: this process's own peak RSS (ru_maxrss would carry the parent's peak across fork)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"cold_start_ms": (t1 - t0) * 1e3, "peak_rss_mb": int(hwm.split()[1]) / 1024}))
"""


def measure_cold_start(bundle: Path, backend: str, threads: int | None) -> dict[str, Any]:
    """Session creation + first inference (imports excluded) and the process's peak RSS."""
    cmd = [sys.executable, "-c", _PROBE, str(bundle), backend, str(threads or "none")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"cold_start_ms": None, "peak_rss_mb": None, "cold_start_error": tail[:300]}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))
