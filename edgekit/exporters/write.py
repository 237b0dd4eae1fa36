"""Writing a bundle: export each candidate graph, keep the first that passes the checks, and publish
model.onnx + edgekit.json atomically. If no candidate passes, nothing is written and CheckFailed
carries the parity table of every attempt.
"""

from __future__ import annotations

import platform
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit.bundle.directory import Bundle, write_manifest
from edgekit.bundle.io import IOContract
from edgekit.bundle.manifest import GRAPH
from edgekit.bundle.parts import (
    ExporterRecord,
    ParityRecord,
    Tolerance,
)
from edgekit.errors import InputError
from edgekit.exporters.check import parity_suite
from edgekit.exporters.diverge import diagnose
from edgekit.exporters.golden import write_golden
from edgekit.exporters.module_io import Declarations
from edgekit.exporters.onnx import (
    DEFAULT_OPSET,
    EXPORTERS,
    finalize_graph,
    frozen_axes,
    onnx_from_module,
    usable_exporters,
)
from edgekit.exporters.plan import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    Plan,
    can_step_only,
    plan_from_checkpoint,
    plan_from_module,
    step_only_plan,
)
from edgekit.exporters.recurrence import sequence_is_not_steps
from edgekit.exporters.refusal import Refusal, native_output_kept
from edgekit.exporters.result import ExportOptions, ExportResult
from edgekit.files import atomic_directory, check_writable, refuse_overlap
from edgekit.parity import ParityReport
from edgekit.progress import stage
from edgekit.reference.torch_backend import TorchBackend
from edgekit.runtimes.onnxruntime import OrtBackend
from edgekit.version import __version__


def bundle_from_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    exporter: str = "auto",
    opset: int | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    force: bool = False,
    steps: int = 200,
    step_only: bool = False,
) -> ExportResult:
    """Export a zoo checkpoint; tolerances default to the model's own."""
    refuse_overlap(Path(out), Path(checkpoint))
    plan = plan_from_checkpoint(checkpoint)
    tolerance = Tolerance(plan.atol if atol is None else atol, plan.rtol if rtol is None else rtol)
    options = ExportOptions(exporter, opset, tolerance, force, steps, step_only)
    return write_bundle(plan, out, options)


def export(
    module: torch.nn.Module,
    example_inputs: Any,
    out: str | Path,
    *,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    state_pairs: list[tuple[str, str]] | None = None,
    axes: dict[str, dict[str, Any]] | None = None,
    int_ranges: dict[str, tuple[int, int]] | None = None,
    task: str = "generic",
    labels: list[str] | None = None,
    vocab: list[str] | None = None,
    preprocess: dict[str, Any] | None = None,
    context: list[str] | None = None,
    max_length: int | None = None,
    when_full: str = "error",
    step_only: bool = False,
    exporter: str = "auto",
    opset: int | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    force: bool = False,
    steps: int = 200,
) -> ExportResult:
    """Export any nn.Module to a validated bundle.

    `example_inputs`: a tensor or a tuple of the module's positional arguments (each a tensor or a
    pytree of tensors). Inputs and outputs are flattened to named tensors (`input_names`,
    `output_names`, or their paths: `input.0`, `output.logits`, ...). `dynamic_axes` names each
    dynamic axis per tensor ({"tokens": {0: "batch", 1: "time"}}); `axes` gives an axis its role,
    minimum and export size ({"seq": {"role": "time", "min": 5}}); `int_ranges` the valid values of
    an integer input ({"ids": (0, 1000)}). A recurrent module lists `state_pairs`
    [("state_in.h", "state_out.h"), ...]: its state is an explicit input/output. An image model
    (task classify or regress) may give `preprocess`, the spec its task API applies to images
    (edgekit.preprocess: resize, interpolation, color, scale, mean, std, layout); any field or value
    it would not apply as written is refused with one InputError. A recurrent module's `context`
    names inputs that are not state but are read by every step, one value per stream (a
    decoder's encoder outputs): the Generator takes them once per stream. A state pair whose
    output is its input grown by the call's length along one dynamic axis (a KV cache) is held
    from empty up to `max_length` positions; generation that would pass them is refused before it
    starts (`when_full="error"`) or ends there (`when_full="stop"`). `step_only=True` exports
    the one-token step alone (time fixed at 1; the runtime feeds prompts by stepping): for a
    module whose step exports but whose prompt path does not (a Python loop over time). It is
    also chosen, and recorded, when no exporter keeps a recurrent module's time axis dynamic but
    its step exports, or when torch's own T-token call is not its T one-token calls
    (exporters.recurrence).

    Returns an ExportResult (`.bundle`, `.manifest`, `.report`), which also unpacks as
    `(path, manifest document)`.
    """
    declared = Declarations(
        input_names, output_names, dynamic_axes, state_pairs, axes, int_ranges,
        task, labels, vocab, preprocess, context, max_length, when_full, step_only,
    )  # fmt: skip
    plan = plan_from_module(module, example_inputs, declared)
    options = ExportOptions(exporter, opset, Tolerance(atol, rtol), force, steps)
    return write_bundle(plan, out, options)


def write_bundle(plan: Plan, out: str | Path, options: ExportOptions | None = None) -> ExportResult:
    """Export `plan` into `out` as `options` say; nothing is written unless parity passes."""
    options = options or ExportOptions()
    out = Path(out)
    exporter, opset, steps = options.exporter, options.opset, options.steps
    atol, rtol = options.tolerance.atol, options.tolerance.rtol
    if exporter not in ("auto", *EXPORTERS):
        raise InputError(f"unknown exporter {exporter!r}; known: auto, {', '.join(EXPORTERS)}")
    if not (0 < atol < float("inf")) or not (0 <= rtol < float("inf")):
        raise InputError(f"tolerances must be positive finite numbers: atol {atol}, rtol {rtol}")
    if steps < 0:
        raise InputError(f"--steps must be >= 0, got {steps}")
    refuse_overlap(out)
    if out.exists() and not options.force:
        raise InputError(f"{out} already exists; pass --force to replace it")
    check_writable(out)
    if options.step_only and not plan.contract.step_only:
        plan = step_only_plan(plan)  # raises for a module with no state to step
    why_step_only = ""
    if can_step_only(plan.contract):
        stage("torch: the prompt in one call against one token per call")
        apart = sequence_is_not_steps(plan, atol, rtol)
        if apart is not None and exporter != "auto":
            raise InputError(
                f"{apart}; export the one-token step alone: step_only=True (--step-only)"
            )
        if apart is not None:
            stage("exporting the one-token step alone (step-only): " + apart)
            plan, why_step_only = step_only_plan(plan), apart
    candidates = usable_exporters(_candidates(exporter, plan.contract), opset)
    attempts: list[dict[str, Any]] = []
    refusal = Refusal(out)  # each refused candidate's reason, short and in full
    with atomic_directory(out, force=options.force) as tmp:
        graph = tmp / GRAPH
        exported = _first_passing(plan, candidates, graph, options, refusal, attempts)
        if exported is None and exporter == "auto" and can_step_only(plan.contract):
            # no graph kept time dynamic (a Python loop over time, ops with no ONNX form on the
            # sequence path): the one-token step alone may still export; prompts then step
            stage("no exporter kept time dynamic; exporting the one-token step (step-only)")
            stepped = step_only_plan(plan)
            exported = _first_passing(stepped, candidates, graph, options, refusal, attempts)
            plan = stepped if exported is not None else plan
            why_step_only = "no exporter kept time dynamic (see the attempts)"
        if exported is None:
            tried = [a["exporter"] for a in attempts]
            hint = can_step_only(plan.contract) and exporter != "auto"
            raise refusal.error(attempts, tried, plan.module, step_only_hint=hint)
        chosen, report = exported
        reference = TorchBackend(plan.module, plan.contract)
        stage(f"exporter {chosen} passed; writing golden records")
        golden = write_golden(tmp, plan, reference, steps)
        tolerance = options.tolerance
        step_graph = plan.step_graph(tmp, reference, tolerance, steps) if plan.step_graph else None
        described = plan.described
        finalize_graph(
            graph,
            {
                "edgekit_version": __version__,
                "source_sha256": described.source.sha256 if described.source else "",
                "task": described.task,
            },
        )
        manifest = replace(
            described,
            tolerance=options.tolerance,
            exporter=ExporterRecord(
                chosen, opset or DEFAULT_OPSET[chosen], exporter, tuple(attempts), why_step_only
            ),
            parity=ParityRecord(report.to_dict(), plan.real_note),
            golden=golden,
            step_graph=step_graph,
            versions=_versions(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        written = write_manifest(tmp, manifest)
    return ExportResult(Bundle(out, written), report)


def _first_passing(
    plan: Plan,
    candidates: list[str],
    graph: Path,
    options: ExportOptions,
    refusal: Refusal,
    attempts: list[dict[str, Any]],
) -> tuple[str, ParityReport] | None:
    """Export `plan` with each candidate in turn into `graph`; the first whose graph passes the
    parity suite, with its report (None if none does). Every try is added to `attempts`."""
    atol, rtol = options.tolerance.atol, options.tolerance.rtol
    reference = TorchBackend(plan.module, plan.contract)
    traced = plan.contract.feeds(plan.contract.sizes(), np.random.default_rng(0))
    example = tuple(torch.from_numpy(v) for v in traced.values())
    step_only = {"step_only": True} if plan.contract.step_only else {}
    for name in candidates:
        stage(f"exporter {name}: exporting")
        printed: list[str] = []
        try:
            with native_output_kept(printed):
                warned = onnx_from_module(
                    plan.module, example, plan.contract, graph, name, options.opset
                )
                candidate = OrtBackend(graph, plan.contract)
        except Exception as exc:  # an exporter's own failure is a finding, reported per attempt
            reason = refusal.exporter_failed(name, exc, printed)
            attempts.append({"exporter": name, **step_only, "passed": False, "error": reason})
            continue
        frozen = frozen_axes(graph, plan.contract)
        stage(f"exporter {name}: checking parity with torch")
        report = parity_suite(reference, candidate, plan, atol, rtol, options.steps)
        passed = report.passed and not frozen
        attempts.append(
            {
                "exporter": name,
                **step_only,
                "passed": passed,
                "frozen_axes": frozen,
                "warnings": warned,
                "parity_failures": report.failures(),
            }
        )
        if passed:
            return name, report
        shapes_only = all(c.error for c in report.cases if not c.passed)
        nodes = [] if shapes_only or frozen else diagnose(plan, graph, atol, rtol)
        refusal.parity_failed(name, report, frozen, nodes)
    return None


def _candidates(exporter: str, contract: IOContract) -> list[str]:
    if exporter != "auto":
        return [exporter]
    # Recurrent graphs: the TorchScript exporter keeps nn.LSTM/GRU/RNN as ONNX ops and scripted
    # loops as ONNX Loop, all with dynamic time; torch.export specialises python loops over time.
    # `script` comes last: it compiles the whole user module, which not every module allows.
    return (
        ["torchscript", "dynamo", "script"]
        if contract.state
        else ["dynamo", "torchscript", "script"]
    )


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxscript

    return {
        "edgekit": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
