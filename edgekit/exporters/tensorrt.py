"""ONNX -> TensorRT engine: optimisation profiles, FP16, timing cache, recorded in the manifest.

Profiles are plain Python (unit-tested on any machine); file naming, compatibility records and buffer
plans live in `runtimes/engine_format.py`, which the native backend reads too. Building needs
`tensorrt` and an NVIDIA GPU (`pip install 'edgekit-ml[gpu]'`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.bundle.directory import Bundle, write_manifest
from edgekit.bundle.io import IOContract
from edgekit.bundle.manifest import Manifest
from edgekit.bundle.parts import Engine
from edgekit.errors import CheckFailed, InputError
from edgekit.runtimes.engine_format import engine_filename, engine_tolerance

TIMING_CACHE = "timing.cache"
Shape = tuple[int, ...]


def profile_shapes(
    contract: IOContract, max_batch: int, max_seq: int, opt_batch: int = 1, opt_seq: int = 1
) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) per input. opt defaults to batch 1 and T = 1: the generation step and
    single-image latency are the hot paths TensorRT should pick kernels for."""
    if max_batch < 1 or max_seq < 1:
        raise InputError(f"--max-batch and --max-seq must be >= 1, got {max_batch}, {max_seq}")
    lo = contract.sizes(batch=1, time=1, at="min")
    opt = contract.sizes(batch=min(opt_batch, max_batch), time=min(opt_seq, max_seq))
    hi = contract.sizes(batch=max_batch, time=max_seq, at="large")
    return {t.name: (t.concrete(lo), t.concrete(opt), t.concrete(hi)) for t in contract.inputs}


def engine_from_onnx(
    onnx_path: Path,
    contract: IOContract,
    max_batch: int,
    max_seq: int,
    fp16: bool,
    timing_cache: Path | None = None,
    workspace_gb: float = 2.0,
) -> tuple[bytes, bytes]:
    """Build a serialized engine; return (engine bytes, updated timing cache bytes)."""
    trt = require("tensorrt", "building TensorRT engines")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(contract, max_batch, max_seq).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(
        timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
    )
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InputError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    return bytes(serialized), bytes(cache.serialize())


def build_engine_into_bundle(
    bundle: str | Path,
    fp16: bool = False,
    max_batch: int = 32,
    max_seq: int = 512,
    force: bool = False,
) -> dict[str, Any]:
    """Build an engine for this machine's GPU into the bundle and record it in the manifest.
    Returns the engine's record as a document (what the CLI prints)."""
    from edgekit.runtimes.cuda import gpu_info

    trt = require("tensorrt", "building TensorRT engines")
    read = Bundle.read(bundle)
    bundle, manifest = read.path, read.manifest
    contract = manifest.contract
    gpu, cc = gpu_info()
    name = engine_filename(gpu, trt.__version__, fp16)
    if (bundle / name).exists() and not force:
        raise InputError(f"{bundle / name} already exists; pass --force to rebuild it")
    engine, cache = engine_from_onnx(
        read.graph, contract, max_batch, max_seq, fp16, bundle / TIMING_CACHE
    )
    for filename, data in ((name, engine), (TIMING_CACHE, cache)):
        tmp = bundle / f".{filename}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, bundle / filename)
    profile = {
        k: [list(s) for s in v] for k, v in profile_shapes(contract, max_batch, max_seq).items()
    }
    record = Engine(
        name, gpu, cc, trt.__version__, max_batch, max_seq, fp16, details={"profile": profile}
    )
    parity = engine_parity(bundle, manifest, record)
    record = replace(record, parity=parity)
    if not parity["passed"]:
        (bundle / name).unlink()
        raise CheckFailed(
            "the TensorRT engine failed parity with ONNX Runtime (CPU); engine removed\n"
            + "\n".join(parity["failures"])
        )
    write_manifest(bundle, manifest.with_engine(record))
    doc = record.to_json()
    json.dumps(doc)  # the record must stay JSON-serialisable
    return doc


def engine_parity(
    bundle: Path, manifest: Manifest | Mapping[str, Any], record: Engine | Mapping[str, Any]
) -> dict[str, Any]:
    """Compare the engine with ONNX Runtime on the CPU at shapes inside the engine's profile."""
    from edgekit.parity import compare_case
    from edgekit.runtimes.onnxruntime import OrtBackend
    from edgekit.runtimes.tensorrt import TrtBackend

    read = Bundle(Path(bundle), Manifest.of(manifest))
    engine_record = record if isinstance(record, Engine) else Engine.from_json(record)
    contract = read.contract
    reference = OrtBackend(read.graph, contract, "cpu")
    # TrtBackend and engine_tolerance (runtimes) still take the record as a document
    document = engine_record.to_json()
    engine = TrtBackend(read.file(engine_record.file), contract, document)
    tol = read.manifest.tolerance
    atol, rtol = engine_tolerance(document, tol.atol, tol.rtol)
    rng = np.random.default_rng(7)
    max_batch, max_seq = engine_record.max_batch, engine_record.max_seq
    shapes = {
        (1, 1),
        (min(2, max_batch), min(3, max_seq)),
        (max_batch, min(37, max_seq)),
    }
    cases = [
        compare_case(
            f"B={b} T={t}", contract.example(b, t, rng), reference.run, engine.run, atol, rtol
        )
        for b, t in sorted(shapes)
    ]
    failures = [
        f"{c.case}: {c.error or [o.name for o in c.outputs if not o.passed]}"
        for c in cases
        if not c.passed
    ]
    worst = max((o.max_abs for c in cases for o in c.outputs), default=0.0)
    return {
        "passed": not failures,
        "atol": atol,
        "rtol": rtol,
        "max_abs": worst,
        "failures": failures,
    }
