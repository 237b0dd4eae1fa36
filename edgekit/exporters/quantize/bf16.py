"""`edgekit quantize --bf16`: OpenVINO's bf16 arithmetic on CPUs that have it, gated like int8/fp16.

No new graph is written: the variant is the fp32 graph (and its step graph) that OpenVINO compiles
with INFERENCE_PRECISION_HINT bf16, its products on AMX or AVX512_BF16 units. ONNX Runtime has no
bf16 kernels on x86 CPUs, so the variant runs on the openvino backend only and its record says so
(`runtime: openvino`). It passes the int8/fp16 gates (gates.measure_backends: OpenVINO at bf16
against fp32 ONNX Runtime, torch's golden records and held-out data), and its speed is OpenVINO bf16
against OpenVINO f32 in one process, so the ratio is the precision's own; `precision="auto"` on the
openvino backend takes it only where that ratio is below 1 and the CPU reports bf16.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from edgekit.bundle.directory import Bundle, write_manifest
from edgekit.bundle.parts import Tolerance, Variant
from edgekit.errors import CheckFailed, InputError
from edgekit.exporters.quantize import gates as gates_mod
from edgekit.exporters.quantize.data import data_split_of
from edgekit.files import atomic_directory, sha256_file
from edgekit.progress import stage
from edgekit.runtimes.golden import replay
from edgekit.runtimes.onnxruntime import OrtBackend

# replaying golden records at bf16 (8 significant bits): logits move by a few hundredths
TOLERANCE = Tolerance(1e-1, 5e-2)
RUNTIME = "openvino"


def add_bf16(
    bundle: str | Path, force: bool = False, replace: bool = False, bars: Any = gates_mod.BARS
) -> dict[str, Any]:
    """Gate the bundle's graph at bf16 on OpenVINO and record it as the bf16 variant; return the
    record (as a document). CheckFailed if a gate misses (unless `force`), InputError where
    OpenVINO or the CPU's bf16 is missing."""
    from edgekit.runtimes.openvino import OpenVinoBackend, cpu_bf16, ov

    try:
        ov()
    except ImportError as exc:
        raise InputError(f"--bf16 runs on OpenVINO: {exc}") from None
    if not cpu_bf16():
        raise InputError(
            "--bf16: this CPU has no bf16 arithmetic OpenVINO can use (its "
            "OPTIMIZATION_CAPABILITIES lack BF16); fp32 is the fastest exact path here"
        )
    read = Bundle.read(bundle)
    manifest, contract = read.manifest, read.contract
    if manifest.golden is None:
        raise InputError(f"{read.path} has no golden records (an older edgekit's); re-export it")
    if manifest.variant("bf16") is not None and not (replace or force):
        raise InputError(f"{read.path} already has a bf16 variant; pass --replace to rebuild it")
    step = read.any_step_graph

    def openvino(precision: str) -> OpenVinoBackend:
        return OpenVinoBackend(read.graph, contract, 1, step_graph=step, precision=precision)

    split, data_note = data_split_of(manifest)
    stage("bf16: held-out quality against fp32 (OpenVINO at bf16, ONNX Runtime fp32)")
    fp32 = OrtBackend(read.graph, contract, threads=1, step_graph=read.step_graph)
    bf16 = openvino("bf16")
    gates = gates_mod.measure_backends(read, fp32, bf16, split, bars)
    if not gates["passed"] and not force:
        raise CheckFailed(
            "the bf16 variant misses its gates; nothing written: " + "; ".join(gates["failures"])
        )
    stage("bf16: speed against OpenVINO f32")
    gates["speed"] = gates_mod.speed(contract, openvino("fp32"), bf16, split)
    gates["speed"]["against"] = "OpenVINO f32, the same graph"
    variant = Variant(
        "bf16",
        manifest.graph,
        TOLERANCE,
        gates=gates,
        forced=not gates["passed"],
        details={
            "runtime": RUNTIME,
            "parent_sha256": sha256_file(read.graph),
            "recipe": {"precision": "bf16", "tool": "openvino", "why": _WHY},
            "data": data_note,
            "bytes_ratio": 0.0,  # no file of its own
        },
    )
    view = manifest.with_variant(variant).at("bf16")
    report = replay(read.path, view, bf16)
    bounds = {
        case.case: max(TOLERANCE.atol, 2 * max((o.max_abs for o in case.outputs), default=0.0))
        for case in report.cases
        if not case.error
    }
    variant = dataclasses.replace(variant, case_atol=bounds)
    with atomic_directory(read.path, force=True) as tmp:
        shutil.copytree(read.path, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        write_manifest(tmp, Bundle.read(read.path).manifest.with_variant(variant))
    return variant.to_json()


_WHY = "the fp32 graph, OpenVINO's inference precision bf16 (products in bf16, sums in f32)"
