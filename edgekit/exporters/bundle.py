"""Checkpoint or nn.Module -> a validated bundle directory (model.onnx + edgekit.json), atomically.

For each exporter candidate: export, check the graph statically (declared dynamic axes left dynamic),
then prove parity with the torch module at the export shapes, at other shapes, on real data and, for
recurrent models, over a greedy rollout. The first candidate that passes is kept; if none does,
nothing is written and CheckFailed carries the parity table.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit.errors import CheckFailed, InputError
from edgekit.exporters.adapters import export_module
from edgekit.exporters.onnx import (
    DEFAULT_OPSET,
    EXPORTERS,
    finalize_graph,
    frozen_axes,
    onnx_from_module,
    usable_exporters,
)
from edgekit.exporters.samples import Sample, real_samples
from edgekit.files import atomic_directory, check_writable
from edgekit.iospec import IOContract, TensorSpec, contract_for, head_for
from edgekit.manifest import SCHEMA, SCHEMA_VERSION, write_manifest
from edgekit.parity import ParityReport, compare_case, error_line, rollout
from edgekit.runtimes.base import Backend
from edgekit.runtimes.onnxruntime import OrtBackend
from edgekit.runtimes.torch_ref import TorchBackend

GRAPH = "model.onnx"
# fp32 tolerances. Torch (oneDNN) and ONNX Runtime (MLAS) sum in different orders and fuse
# differently, which moves fp32 results by ~1e-6 relative per layer; deep conv stacks and long
# recurrences accumulate that to ~1e-5. atol 1e-4 / rtol 1e-3 leaves a 10x margin over what we
# measure, and still catches real export bugs (a wrong GRU gate layout differs by ~1e-1).
DEFAULT_ATOL, DEFAULT_RTOL = 1e-4, 1e-3
TOLERANCE = {"linear": (1e-3, 1e-4)}  # outputs in the hundreds: rtol carries the check
EXPORT_BATCH, EXPORT_TIME = 2, 3  # >= 2 each, or torch.export specialises the axis
OTHER_SHAPES = [(1, 1), (5, 37)]


@dataclass
class Plan:
    """What to export and how to check it, for a zoo checkpoint or a user's module."""

    module: torch.nn.Module
    contract: IOContract
    manifest: dict[str, Any]  # task, model, labels, vocab, preprocess, head, source
    real: list[Sample]
    real_note: str


def plan_from_checkpoint(checkpoint: str | Path) -> Plan:
    from edgekit.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.meta
    real, note = real_samples(meta)
    return Plan(
        module=export_module(ckpt.build(), meta),
        contract=contract_for(meta),
        manifest={
            "task": meta["task"],
            "model": {"name": meta["model"], "config": meta["config"]},
            "head": head_for(meta),
            "labels": meta.get("labels"),
            "vocab": meta.get("vocab"),
            "preprocess": meta.get("preprocess"),
            "columns": meta.get("columns"),
            "source": {
                "checkpoint": str(ckpt.path.resolve()),
                "sha256": ckpt.sha256,
                "data": meta["data"],
                "metrics": meta["metrics"],
            },
        },
        real=real,
        real_note=note,
    )


def bundle_from_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    exporter: str = "auto",
    opset: int | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    force: bool = False,
    steps: int = 200,
) -> tuple[Path, dict[str, Any]]:
    plan = plan_from_checkpoint(checkpoint)
    default_atol, default_rtol = TOLERANCE.get(
        plan.manifest["model"]["name"], (DEFAULT_ATOL, DEFAULT_RTOL)
    )
    return write_bundle(
        plan,
        out,
        exporter,
        opset,
        default_atol if atol is None else atol,
        default_rtol if rtol is None else rtol,
        force,
        steps,
    )


def verify_bundle(
    bundle: str | Path,
    checkpoint: str | Path | None = None,
    steps: int = 200,
) -> ParityReport:
    """Re-run the export-time parity checks of a bundle against its source checkpoint."""
    from edgekit.manifest import read_manifest

    manifest = read_manifest(bundle)
    source = manifest.get("source", {})
    if checkpoint is None:
        if "checkpoint" not in source:
            raise InputError(
                f"{bundle} was exported from a module, not a checkpoint; pass --checkpoint"
            )
        checkpoint = source["checkpoint"]
    plan = plan_from_checkpoint(checkpoint)
    if plan.manifest["source"]["sha256"] != source.get("sha256"):
        raise InputError(
            f"checkpoint {checkpoint} is not this bundle's source (its sha256 differs "
            "from the manifest's source.sha256)"
        )
    if steps < 0:
        raise InputError(f"--steps must be >= 0, got {steps}")
    contract = IOContract.from_manifest(manifest)
    candidate = OrtBackend(Path(bundle) / manifest["graph"], contract)
    tol = manifest["tolerance"]
    return parity_suite(
        TorchBackend(plan.module, contract), candidate, plan, tol["atol"], tol["rtol"], steps
    )


def export(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    out: str | Path,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    state_pairs: list[tuple[str, str]] | None = None,
    task: str = "generic",
    labels: list[str] | None = None,
    vocab: list[str] | None = None,
    preprocess: dict[str, Any] | None = None,
    exporter: str = "auto",
    opset: int | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    force: bool = False,
    steps: int = 200,
) -> tuple[Path, dict[str, Any]]:
    """Export any nn.Module to a validated bundle.

    `dynamic_axes` names each dynamic axis per input/output ({"tokens": {0: "batch", 1: "time"}});
    use "batch" and "time" so parity also runs at other batch sizes and lengths. A recurrent module
    lists `state_pairs` [("state_in.h", "state_out.h"), ...]: its state is an explicit input/output.
    """
    from edgekit.iospec import StatePair

    module = module.eval()
    if len(example_inputs) != len(input_names):
        raise InputError(f"{len(example_inputs)} example inputs but {len(input_names)} input names")
    axes = dynamic_axes or {}
    with torch.no_grad():
        outs = module(*example_inputs)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    if len(outs) != len(output_names):
        raise InputError(
            f"the module returns {len(outs)} outputs but {len(output_names)} names were given"
        )

    def spec(name: str, t: torch.Tensor) -> TensorSpec:
        dims = axes.get(name, {})
        shape = tuple(dims.get(i, int(s)) for i, s in enumerate(t.shape))
        return TensorSpec(name, str(t.detach().numpy().dtype), shape)

    pairs = [StatePair(i, o) for i, o in (state_pairs or [])]
    token = next(
        (n for n, t in zip(input_names, example_inputs, strict=True) if t.dtype == torch.int64),
        None,
    )
    contract = IOContract(
        [spec(n, t) for n, t in zip(input_names, example_inputs, strict=True)],
        [spec(n, t) for n, t in zip(output_names, outs, strict=True)],
        pairs,
        token if pairs else None,
        len(vocab) if vocab else 0,
    )
    if pairs and not contract.vocab_size:
        contract.vocab_size = (
            int(max(int(t.max()) for t in example_inputs if t.dtype == torch.int64)) + 1
        )
    digest = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        digest.update(k.encode())
        digest.update(v.detach().cpu().contiguous().numpy().tobytes())
    plan = Plan(
        module,
        contract,
        {
            "task": task,
            "model": {"name": type(module).__name__, "config": None},
            "head": None,
            "labels": labels,
            "vocab": vocab,
            "preprocess": preprocess,
            "source": {"module": type(module).__qualname__, "sha256": digest.hexdigest()},
        },
        [],
        "no real data for a user module",
    )
    return write_bundle(plan, out, exporter, opset, atol, rtol, force, steps)


def write_bundle(
    plan: Plan,
    out: str | Path,
    exporter: str,
    opset: int | None,
    atol: float,
    rtol: float,
    force: bool,
    steps: int,
) -> tuple[Path, dict[str, Any]]:
    out = Path(out)
    if exporter not in ("auto", *EXPORTERS):
        raise InputError(f"unknown exporter {exporter!r}; known: auto, {', '.join(EXPORTERS)}")
    if not (0 < atol < float("inf")) or not (0 <= rtol < float("inf")):
        raise InputError(f"tolerances must be positive finite numbers: atol {atol}, rtol {rtol}")
    if steps < 0:
        raise InputError(f"--steps must be >= 0, got {steps}")
    if out.exists() and not force:
        raise InputError(f"{out} already exists; pass --force to replace it")
    check_writable(out)
    reference = TorchBackend(plan.module, plan.contract)
    example = tuple(
        torch.from_numpy(v)
        for v in plan.contract.example(EXPORT_BATCH, EXPORT_TIME, np.random.default_rng(0)).values()
    )
    candidates = usable_exporters(_candidates(exporter, plan.contract), opset)
    attempts: list[dict[str, Any]] = []
    failures: list[str] = []
    with atomic_directory(out, force=force) as tmp:
        graph = tmp / GRAPH
        for name in candidates:
            try:
                warned = onnx_from_module(plan.module, example, plan.contract, graph, name, opset)
            except Exception as exc:  # an exporter's own failure is a finding, reported per attempt
                msg = error_line(exc)
                attempts.append({"exporter": name, "passed": False, "error": msg})
                failures.append(f"[{name}] export failed: {msg}")
                continue
            frozen = frozen_axes(graph, plan.contract)
            report = parity_suite(
                reference, OrtBackend(graph, plan.contract), plan, atol, rtol, steps
            )
            passed = report.passed and not frozen
            attempts.append(
                {
                    "exporter": name,
                    "passed": passed,
                    "frozen_axes": frozen,
                    "warnings": warned,
                    "parity_failures": report.failures(),
                }
            )
            if passed:
                break
            failures.append(_explain(name, report, frozen))
        else:
            raise CheckFailed("export failed parity; no bundle written\n" + "\n\n".join(failures))
        chosen = attempts[-1]["exporter"]
        source_sha = plan.manifest["source"]["sha256"]
        import edgekit

        finalize_graph(
            graph,
            {
                "edgekit_version": edgekit.__version__,
                "source_sha256": source_sha,
                "task": plan.manifest["task"],
            },
        )
        manifest = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "graph": GRAPH,
            **plan.manifest,
            **plan.contract.to_manifest(),
            "exporter": {
                "name": chosen,
                "opset": opset or DEFAULT_OPSET[chosen],
                "requested": exporter,
                "attempts": attempts,
            },
            "tolerance": {"atol": atol, "rtol": rtol},
            "parity": {**report.to_dict(), "real_data_note": plan.real_note},
            "versions": _versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_manifest(tmp, manifest)
    return out, manifest


def _candidates(exporter: str, contract: IOContract) -> list[str]:
    if exporter != "auto":
        return [exporter]
    # Recurrent graphs: the TorchScript exporter keeps nn.LSTM/GRU/RNN as ONNX ops and scripted
    # loops as ONNX Loop, all with dynamic time; torch.export specialises python loops over time.
    return ["torchscript", "dynamo"] if contract.state else ["dynamo", "torchscript"]


def parity_suite(
    reference: Backend,
    candidate: Backend,
    plan: Plan,
    atol: float,
    rtol: float,
    steps: int,
) -> ParityReport:
    contract = plan.contract
    report = ParityReport(reference.name, candidate.name, atol, rtol)
    has_time = any("time" in t.shape for t in contract.inputs)
    rng = np.random.default_rng(1234)
    shapes = [
        (EXPORT_BATCH, EXPORT_TIME, "export shapes"),
        *((b, t, "other shape") for b, t in OTHER_SHAPES),
    ]
    for b, t, kind in shapes:
        label = f"{kind} B={b}" + (f" T={t}" if has_time else "")
        feeds = contract.example(b, t, rng)
        report.cases.append(compare_case(label, feeds, reference.run, candidate.run, atol, rtol))
    for label, feeds in plan.real:
        b = next(iter(feeds.values())).shape[0]
        feeds = {**contract.zero_state(b), **feeds}
        report.cases.append(compare_case(label, feeds, reference.run, candidate.run, atol, rtol))
    if contract.state and steps > 0 and contract.token_input == "tokens":
        prompt = (
            plan.real[0][1]["tokens"][:, :16]
            if plan.real
            else (rng.integers(0, contract.vocab_size, size=(1, 16), dtype=np.int64))
        )
        pairs = [(p.input, p.output) for p in contract.state]
        report.rollout = rollout(
            reference.run, candidate.run, prompt, contract.zero_state(1), pairs, steps, atol
        )
    return report


def _explain(exporter: str, report: ParityReport, frozen: list[str]) -> str:
    lines = [f"[{exporter}] parity table (torch vs onnxruntime):", report.table()]
    wrong_shape = any("shape" in o.detail for c in report.cases for o in c.outputs)
    invalid_dims = any("invalid dimensions" in c.error.lower() for c in report.cases)
    if frozen:
        lines += [f"frozen dynamic axis: {f}" for f in frozen]
    if frozen or invalid_dims:
        lines.append(
            "likely cause: the exporter specialised a dynamic axis to the example size (torch.export "
            "fixes dims whose example size is 0 or 1, and unrolls a Python loop over time at the "
            "example length); try --exporter torchscript"
        )
    elif wrong_shape:
        lines.append(
            "likely cause: a dynamic axis is frozen inside the graph (a Reshape or Expand baked the "
            "example size, pytorch/pytorch#191855) though the inputs are declared dynamic"
        )
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxscript

    import edgekit

    return {
        "edgekit": edgekit.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
