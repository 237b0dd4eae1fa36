"""Verifying a bundle: re-run the export-time parity suite against its source checkpoint."""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import InputError
from edgekit.exporters.check import parity_suite
from edgekit.exporters.diverge import diagnose
from edgekit.exporters.plan import plan_from_checkpoint
from edgekit.iospec import IOContract
from edgekit.manifest import read_manifest
from edgekit.parity import ParityReport
from edgekit.reference.torch_backend import TorchBackend
from edgekit.runtimes.onnxruntime import OrtBackend


def verify_bundle(
    bundle: str | Path,
    checkpoint: str | Path | None = None,
    steps: int = 200,
) -> ParityReport:
    """The parity report of `bundle` (on ONNX Runtime, CPU) against its source checkpoint."""
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
    report = parity_suite(
        TorchBackend(plan.module, contract), candidate, plan, tol["atol"], tol["rtol"], steps
    )
    if not report.passed:
        graph = Path(bundle) / manifest["graph"]
        report.diagnosis = diagnose(plan, graph, tol["atol"], tol["rtol"])
    return report
