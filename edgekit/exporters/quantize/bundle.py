"""`edgekit quantize`: derive an int8 or fp16 variant, gate it, and add it to the bundle atomically
(bf16, OpenVINO's arithmetic on the fp32 graph, is bf16.py).

1. pick a recipe from the graph (recipes.py), or refuse with the reason it does not pay;
2. build the derived graph in a scratch folder and open it in a subprocess first, so an ONNX
   Runtime crash is an error message, not a dead process;
3. measure the gates (gates.py) on the model's held-out data (data.py);
4. if a gate fails, rank the quantized nodes by how much each alone moves the outputs and retry
   with the most sensitive ones kept in float (search.py);
5. still failing: refuse (exit 1) unless --force. Passing: copy the bundle with the variant and its
   manifest record into a temporary folder and swap it into place, so a reader never sees a
   variant file the manifest does not list.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.directory import Bundle, write_manifest
from edgekit.bundle.io import IOContract
from edgekit.bundle.parts import Tolerance, Variant
from edgekit.errors import CheckFailed, InputError
from edgekit.exporters.quantize import gates as gates_mod
from edgekit.exporters.quantize import recipes
from edgekit.exporters.quantize.data import (
    calibration_batches,
    calibration_note,
    data_split_of,
    held_out_from,
)
from edgekit.exporters.quantize.search import Job
from edgekit.files import atomic_directory, sha256_file
from edgekit.runtimes.onnxruntime import OrtBackend

USEFUL_BYTES_RATIO = 0.5  # a variant must be at most this size, or
USEFUL_SPEED_RATIO = 0.95  # at most this latency, of the fp32 graph
MOSTLY_FLOAT = 0.5  # a sequence graph this float after int8 (GRU, RNN) serves prompts in fp32
# replaying golden records on a reduced-precision graph: logits move by ~1e-2, so near ties may flip
VARIANT_TOLERANCE = {"int8": Tolerance(5e-2, 5e-2), "fp16": Tolerance(1e-2, 1e-2)}


def variant_file(precision: str) -> str:
    return f"model.{precision}.onnx"


def quantize_bundle(
    bundle: str | Path,
    precision: str = "int8",
    mode: str | None = None,
    per_channel: bool = True,
    reduce_range: bool = False,
    force: bool = False,
    calibration: Path | None = None,
    bars: gates_mod.Bars = gates_mod.BARS,
    replace: bool = False,
) -> dict[str, Any]:
    """Add the variant and return its manifest record (as a document: what the CLI prints).
    Raises recipes.DoesNotPay (nothing to do), CheckFailed (a gate missed: nothing written) or
    InputError. `replace` rebuilds an existing variant; `force` also keeps one that misses its
    gates (or does not pay)."""
    import onnx

    if precision == "bf16":  # OpenVINO's arithmetic on the fp32 graph: no graph of its own
        from edgekit.exporters.quantize.bf16 import add_bf16

        return add_bf16(bundle, force, replace, bars)
    read = Bundle.read(bundle)
    bundle, manifest = read.path, read.manifest
    if manifest.golden is None:
        raise InputError(
            f"{bundle} has no golden records (exported by an older edgekit); re-export it"
        )
    name = variant_file(precision)
    have = manifest.variant(precision) is not None
    if have and not (replace or force):
        raise InputError(
            f"{bundle} already has an {precision} variant; pass --replace to rebuild it"
        )
    parent = read.graph
    contract = manifest.contract
    with tempfile.TemporaryDirectory(prefix=".edgekit-quantize-") as scratch:
        source, prepared = recipes.prepare(parent, Path(scratch) / "source.onnx")
        model = onnx.load(str(source))
        recipe = recipes.choose(model, precision, mode, per_channel, reduce_range)
        split, data_note = data_split_of(manifest)
        if split is None and calibration is not None:
            split = held_out_from(calibration, contract)
            data_note += f"; gates measured on --calibration {calibration.name}"
        batches = calibration_batches(split, calibration, contract, bundle, manifest)
        out = Path(scratch) / name
        job = Job(bundle, manifest, source, model, contract, split, batches, bars, out)
        recipe, gates, tried = job.search(recipe, keep_failing=force)
        if not gates["passed"] and not force:
            kept = (
                f"; kept up to {len(tried)} most sensitive node(s) in float first" if tried else ""
            )
            raise CheckFailed(
                f"the {precision} variant misses its gates; nothing written: "
                + "; ".join(gates["failures"])
                + kept
                + ("" if per_channel else "; per-channel weights usually pass: drop --per-tensor")
            )
        if job.variant_step is not None and not _steps_faster(job, contract, gates["optimization"]):
            job.step_source = None  # the variant steps on its own sequence graph: measure that
            gates = {**job.measure(gates["optimization"]), "optimization": gates["optimization"]}
        float_ops, float_share = recipes.float_share(model, recipe)
        prompts_fp32 = job.variant_step is not None and float_share > MOSTLY_FLOAT
        if prompts_fp32:  # int8 reaches only the head of the sequence graph: prompts stay fp32
            job.out = parent
            gates = {**job.measure(gates["optimization"]), "optimization": gates["optimization"]}
            float_ops, float_share = [], 0.0
        gates["speed"] = gates_mod.measure_speed(
            bundle, manifest, job.out, split, gates["optimization"], job.variant_step
        )
        added = [f for f in (job.out, job.variant_step) if f is not None and f != parent]
        bytes_ratio = sum(f.stat().st_size for f in added) / parent.stat().st_size
        if precision == "int8" and not (force or replace):
            _refuse_if_useless(bytes_ratio, gates["speed"]["ratio"], float_ops, float_share)
        optimization = gates.pop("optimization")
        details: dict[str, Any] = {
            "parent_sha256": sha256_file(parent),
            "prepared": prepared,
            "recipe": recipe.to_dict(),
            "quantized_nodes": recipes.quantized_nodes(model, recipe),
            "quantized_ops": _new_ops(parent, job.out) | _step_ops(read, job),
            "float_ops": float_ops,
            "float_weight_share": float_share,
            "calibration": calibration_note(recipe, batches, calibration, split),
            "data": data_note,
            "bytes_ratio": bytes_ratio,  # the files the variant adds, against the fp32 graph
            **(
                {"prompts": f"fp32 ({manifest.graph}): {precision} would reach only its head"}
                if prompts_fp32
                else {}
            ),
        }
        step_file = None
        if job.variant_step is not None:
            step_parent = read.any_step_graph
            assert step_parent is not None
            step_file = job.step_out.name
            details["step_bytes_ratio"] = job.step_out.stat().st_size / step_parent.stat().st_size
        variant = Variant(
            precision,
            job.out.name,
            VARIANT_TOLERANCE[precision],
            optimization,
            step_file=step_file,
            gates=gates,
            forced=not gates["passed"],
            details=details,
        )
        case_atol = _case_tolerances(read, job.out, variant, job.variant_step)
        variant = dataclasses.replace(variant, case_atol=case_atol)
        _publish(bundle, added, variant)
    return variant.to_json()  # the CLI (edgekit/cli/quantize.py) prints the record


def _step_ops(read: Bundle, job: Job) -> dict[str, int]:
    step_parent = read.any_step_graph
    if job.variant_step is None or step_parent is None:
        return {}
    return _new_ops(step_parent, job.variant_step)


def _steps_faster(job: Job, contract: IOContract, optimization: str) -> bool:
    """Whether the variant gets a one-token graph of its own: where it steps clearly faster than
    on its sequence graph (step_graph.clearly_faster; the file costs bytes, so a tie does not)."""
    from edgekit.exporters.step_graph import clearly_faster, step_speed

    sequence = OrtBackend(job.out, contract, threads=1, optimization=optimization)
    stepped = OrtBackend(
        job.out, contract, threads=1, optimization=optimization, step_graph=job.variant_step
    )
    return clearly_faster(step_speed(sequence, stepped))


def _refuse_if_useless(
    bytes_ratio: float, speed_ratio: float, float_ops: list[str], float_share: float
) -> None:
    """A variant neither smaller nor faster is not worth a file (a GRU: ORT keeps the cell float)."""
    if bytes_ratio > USEFUL_BYTES_RATIO and speed_ratio > USEFUL_SPEED_RATIO:
        left = (
            f"{', '.join(float_ops)} stay in float ({float_share:.0%} of the weights), so "
            if float_ops
            else ""
        )
        raise recipes.DoesNotPay(
            f"int8 does not pay for this model: {left}the variant measured {bytes_ratio:.2f}x the "
            f"fp32 size and {speed_ratio:.2f}x its latency; nothing written (--force writes it)"
        )


def _case_tolerances(
    read: Bundle,
    graph: Path,
    variant: Variant,
    step: Path | None,
) -> dict[str, float]:
    """Per golden case, twice the variant's distance from torch here (at least its tolerance):
    `edgekit check --precision` then asks another device to compute the variant as this one did.
    Random-input cases lie outside a static variant's calibrated ranges and drift far; real-data
    cases stay close, so each gets its own bound rather than one loose bound for all."""
    from edgekit.runtimes.golden import replay

    contract = read.contract
    backend = OrtBackend(graph, contract, optimization=variant.optimization, step_graph=step)
    at_variant = dataclasses.replace(read.manifest, tolerance=variant.tolerance)
    report = replay(read.path, at_variant, backend)
    floor = float(variant.tolerance.atol)
    bounds = {}
    for case in report.cases:
        worst = max((o.max_abs for o in case.outputs), default=0.0)
        if not case.error and np.isfinite(worst):
            bounds[case.case] = max(floor, 2 * worst)
    return bounds


def _new_ops(parent: Path, variant: Path) -> dict[str, int]:
    import onnx

    def ops(path: Path) -> Counter[str]:
        return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)

    before, after = ops(parent), ops(variant)
    return {op: n for op, n in sorted(after.items()) if op not in before}


def _publish(bundle: Path, files: list[Path], variant: Variant) -> None:
    """Copy the bundle without the old variant of this precision, add the new one's files and
    record, swap the copy into place."""
    with atomic_directory(bundle, force=True) as tmp:
        # again, under the lock: another variant may have landed
        manifest = Bundle.read(bundle).manifest
        old = manifest.variant(variant.precision)
        stale = set(old.files if old is not None else []) - {manifest.graph}
        names = [f.name for f in files] + sorted(stale)
        shutil.copytree(
            bundle, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*", *names)
        )
        for f in files:
            shutil.copy2(f, tmp / f.name)
        write_manifest(tmp, manifest.with_variant(variant))
