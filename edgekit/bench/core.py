"""Run a benchmark over one bundle and return the result document (schema "edgekit.bench" v1).

Result document:
    schema, schema_version     "edgekit.bench", 1
    created, bundle, task, model
    machine                    {cpu, isa (the CPU features kernels dispatch on), cores, platform,
                                python}
    versions                   {edgekit, numpy, onnxruntime, torch (when present)}
    settings                   {backends, batch, warmup, warmup_s, iters, duration_s, rounds, threads,
                                timer: "perf_counter_ns", gc_paused: true, interleaved: true}
    backends                   {name: {status: "ok" | "skipped" | "failed", reason, cold_start_ms,
                                peak_rss_mb, model_bytes, threads}}
    results                    [{backend, precision, quality, case, batch, items_per_call, n,
                                min_us, p50_us, p50_ci95_us, p90_us, p95_us, p99_us, p99_9_us,
                                max_us, mean_us, stdev_us, cv, noisy, wall_s, throughput_per_s
                                (items over wall_s), speedup_vs_torch, vs_floor (recurrent
                                steps: p50 over the numpy-floor row's), samples_us}]
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import edgekit.reference  # noqa: F401  (registers the torch reference backends)
from edgekit.bench.cases import Case, build_cases
from edgekit.bench.coldstart import measure_cold_start
from edgekit.bench.floors import (
    FLOOR,
    add_floor_ratios,
    add_peak_fractions,
    floor_cases,
    fma_peak,
    step_flops,
)
from edgekit.bench.runner import Budget, run_rounds
from edgekit.bench.stats import summarize
from edgekit.bundle.directory import Bundle
from edgekit.bundle.io import IOContract
from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.machine import cpu_model
from edgekit.parity import error_line
from edgekit.runtimes import registry


def run_bench(
    bundle: str | Path | Bundle,
    backends: list[str] | None = None,
    batches: list[int] | None = None,
    budget: Budget | None = None,
    threads: int | None = None,
    cold_start: bool = True,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    peers: dict[str, Callable[[Path, IOContract, list[int]], list[Case]]] | None = None,
    precision: str = "all",
    floors: bool = True,
) -> dict[str, Any]:
    """Time `backends` on `bundle`. `peers` adds other runtimes (e.g. OpenVINO in the benchmark
    script) as named case builders over the same ONNX file, interleaved with the rest.
    `precision`: "all" (fp32 and every variant the bundle has) or a comma-separated list; each
    variant is a row of its own, beside its accuracy or perplexity delta from quantize time."""
    if isinstance(bundle, Bundle):  # read already (a plain .onnx: runtimes/plain_onnx.py)
        read, bundle = bundle, bundle.path
    else:
        bundle = Path(bundle)
        read = Bundle.read(bundle, verify=True)
    budget = budget or Budget()
    budget.validate()
    batches = batches or [1, 8, 32]
    if any(b <= 0 for b in batches):
        raise InputError(f"--batch sizes must be positive integers, got {batches}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    manifest, contract = read.manifest, read.contract
    chosen = backends or registry.names()
    status: dict[str, dict[str, Any]] = {}
    cases = []
    precisions = _precisions(manifest, precision)
    for name in chosen:
        entry = registry.get(name)
        reason = entry.unavailable(bundle, manifest)
        if reason is not None:
            status[name] = {"status": "skipped", "reason": reason}
            continue
        for p in precisions if entry.runs_variants else ["fp32"]:  # torch, engines: fp32 only
            label = name if p == "fp32" else f"{name} {p}"
            seen = manifest.at(p, entry.device)
            only = registry.sole_runtime(seen)
            if only is not None and only != name:  # a variant one backend computes (bf16)
                status[label] = {"status": "skipped", "reason": f"{p} runs on {only} only"}
                continue
            try:
                handle = entry.open(bundle, seen, registry.OpenOptions(threads=threads))
                task = manifest.task
                cases += build_cases(label, handle, contract, task, batches, entry.reference)
            except Exception as exc:  # a backend that breaks is reported, never crashes the run
                status[label] = {"status": "failed", "reason": error_line(exc)}
                continue
            status[label] = {
                "status": "ok",
                "threads": threads,
                "precision": p,
                "quality": quality_delta(manifest, p),
                "model_bytes": entry.model_bytes(bundle, seen),
            }
    for name, build in (peers or {}).items():
        try:
            cases += build(read.graph, contract, batches)
            status[name] = {
                "status": "ok",
                "threads": threads,
                "model_bytes": registry.get("ort-cpu").model_bytes(bundle, manifest),
            }
        except Exception as exc:  # a peer that breaks is reported, never crashes the run
            status[name] = {"status": "failed", "reason": error_line(exc)}
    if manifest.task == "generate" and floors and cases and (contract.growing or contract.context):
        status[FLOOR] = {  # the floor counts weight products; attention over them is not one
            "status": "skipped",
            "reason": "a step that attends over a KV cache or a context is more than its weights",
        }
    elif manifest.task == "generate" and floors and cases:
        try:
            cases += floor_cases(floor_graph(bundle, manifest), batches)
            status[FLOOR] = {
                "status": "ok",
                "threads": _blas_threads(threads),
                "model_bytes": registry.get("ort-cpu").model_bytes(bundle, manifest),
            }
        except ImportError as exc:  # onnx reads the weights; a runtime-only install lacks it
            status[FLOOR] = {"status": "skipped", "reason": f"needs {exc.name}"}
    if not cases:
        raise InputError(
            "no backend can run here: "
            + "; ".join(f"{n}: {s['reason']}" for n, s in status.items())
        )
    advance = progress("benchmarking", len(cases) * max(1, budget.rounds)) if progress else None
    wall: dict[int, int] = {}
    with _blas_limited(threads):  # the numpy floor on the threads the runtimes get
        samples = run_rounds(cases, budget, advance, wall)
    if cold_start:
        for name, s in status.items():
            if s["status"] == "ok" and name in registry.names():
                s.update(measure_cold_start(bundle, name, threads))
    results = []
    for i, case in enumerate(cases):
        row = {
            "backend": case.backend,
            "precision": case.precision or status.get(case.backend, {}).get("precision", "fp32"),
            "quality": status.get(case.backend, {}).get("quality", ""),
            "case": case.name,
            "batch": case.batch,
            "items_per_call": case.items_per_call,
            **summarize(samples[i], case.items_per_call, wall.get(i)),
        }
        row["samples_us"] = [round(v / 1e3, 3) for v in samples[i]]
        results.append(row)
    _add_speedups(results)
    add_floor_ratios(results)
    machine = machine_info()
    if FLOOR in status and status[FLOOR]["status"] == "ok":
        flops = step_flops(floor_graph(bundle, manifest))
        isa = set(machine.get("isa") or [])
        vnni = bool({"avx512_vnni", "avx_vnni"} & isa)
        # bf16: AVX512_BF16 makes two products per fp32 lane; AMX's tile rate is not modelled
        bf16 = None if "amx_bf16" in isa else 2 if "avx512_bf16" in isa else None
        add_peak_fractions(results, flops, machine["fma_peak"], threads, vnni, bf16)
    return {
        "schema": "edgekit.bench",
        "schema_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bundle": str(bundle.resolve()),
        "task": manifest.task,
        "model": {"name": manifest.model, "config": manifest.model_config},
        "machine": machine,
        "versions": _versions(),
        "settings": {
            "backends": chosen,
            "precisions": precisions,
            "batch": batches,
            "warmup": budget.warmup,
            "warmup_s": budget.warmup_s,
            "iters": budget.iters,
            "duration_s": budget.duration_s,
            "rounds": budget.rounds,
            "threads": threads,
            "threads_effective": _effective_threads(
                threads, [s for s in status if status[s]["status"] == "ok"]
            ),
            "timer": "perf_counter_ns",
            "gc_paused": True,
            "interleaved": True,
        },
        "backends": status,
        "results": results,
    }


def floor_graph(bundle: Path, manifest: Manifest | Mapping[str, Any]) -> Path:
    """The graph whose weights set a step's floor: the one-token step graph where the bundle has
    one (its token table is a lookup, not a product), else the sequence graph."""
    read = Bundle(Path(bundle), Manifest.of(manifest))
    return read.any_step_graph or read.graph


def _blas_limited(threads: int | None) -> Any:
    """numpy's BLAS held to `threads` for the run (threadpoolctl, where installed), so the floor
    row of a one-thread bench is a one-thread floor; a no-op otherwise."""
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def _blas_threads(threads: int | None) -> Any:
    if threads is None:
        return "numpy's BLAS default"
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return "numpy's BLAS default (threadpoolctl is not installed to hold it to --threads)"
    return threads


def _precisions(manifest: Manifest, precision: str) -> list[str]:
    have = manifest.precisions
    if precision == "all":
        return have
    asked = [p.strip() for p in precision.split(",") if p.strip()]
    missing = [p for p in asked if p not in have]
    if missing or not asked:
        raise InputError(
            f"--precision {precision!r}: this bundle has {', '.join(have)} "
            "(make variants with edgekit quantize)"
        )
    return asked


def quality_delta(manifest: Manifest | Mapping[str, Any], precision: str) -> str:
    """A variant's task-quality change against fp32, as measured by edgekit quantize."""
    variant = Manifest.of(manifest).variant(precision)
    if variant is None:
        return ""
    return variant.measured.quality


def _add_speedups(results: list[dict[str, Any]]) -> None:
    """speedup_vs_torch = torch eager p50 / this p50, for the same case (the bound and host step paths
    compare against torch's step at the same batch). GPU rows compare with torch eager on the GPU
    when it ran, CPU rows with torch on the CPU."""
    p50: dict[str, dict[str, float]] = {}
    for r in results:
        if r["backend"] in ("torch", "torch-cuda"):
            p50.setdefault(r["backend"], {})[r["case"]] = r["p50_us"]
    for r in results:
        gpu = any(tag in r["backend"] for tag in ("cuda", "trt"))
        torch_p50 = p50.get("torch-cuda" if gpu and "torch-cuda" in p50 else "torch", {})
        key = r["case"].replace("step bound ", "step ").replace("step host ", "step ")
        ref = torch_p50.get(key)
        r["speedup_vs_torch"] = ref / r["p50_us"] if ref else None


def _effective_threads(threads: int | None, backends: list[str]) -> dict[str, Any]:
    """What each runtime actually used: an explicit count, or the runtime's own default."""
    out: dict[str, Any] = {}
    if any(b.startswith("ort") for b in backends):
        out["onnxruntime_intra_op"] = (
            threads
            or f"onnxruntime default (one per physical core; {os.cpu_count()} cpus); one-token "
            "steps of up to 16 streams on one thread where the step graph fits in one core's L2 "
            "cache (runtimes/threads.py; `edgekit info` says)"
        )
    if "openvino" in backends:
        out["openvino"] = threads or "OpenVINO default (LATENCY hint)"
    if any(b.startswith("torch") for b in backends):
        import torch

        out["torch"] = torch.get_num_threads()
    return out


def machine_info() -> dict[str, Any]:
    cpu = cpu_model()
    isa, cores = _isa_flags(), os.cpu_count() or 1
    return {
        "cpu": cpu,
        "isa": isa,
        "cores": cores,
        "fma_peak": fma_peak(isa, cores),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


# the CPU features that decide which kernels ONNX Runtime and numpy pick
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")  # fmt: skip


def _isa_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ISA_FLAGS if f in have]
    except OSError:
        pass
    return []


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    packages = (
        "edgekit-ml",
        "numpy",
        "onnxruntime",
        "onnxruntime-gpu",
        "openvino",
        "torch",
        "tensorrt",
    )
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out
