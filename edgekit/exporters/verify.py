"""Verifying a bundle: re-run the export-time parity suite against its source (checkpoint or module)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bundle.directory import Bundle
from edgekit.errors import InputError
from edgekit.exporters.check import parity_suite
from edgekit.exporters.diverge import diagnose
from edgekit.exporters.source import source_plan
from edgekit.parity import ParityReport
from edgekit.reference.torch_backend import TorchBackend
from edgekit.runtimes.onnxruntime import OrtBackend


def verify_bundle(
    bundle: str | Path,
    checkpoint: str | Path | None = None,
    steps: int = 200,
    module: str | None = None,
    weights: str | Path | None = None,
) -> ParityReport:
    """The parity report of `bundle` (on ONNX Runtime, CPU) against its source: the checkpoint or
    module factory the manifest records, or the one given."""
    read = Bundle.read(bundle)
    manifest = read.manifest
    plan = source_plan(manifest, checkpoint, module, weights)
    if steps < 0:
        raise InputError(f"--steps must be >= 0, got {steps}")
    contract = manifest.contract
    candidate = OrtBackend(read.graph, contract)
    tol = manifest.tolerance
    report = parity_suite(
        TorchBackend(plan.module, contract), candidate, plan, tol.atol, tol.rtol, steps
    )
    if not report.passed:
        report.diagnosis = diagnose(plan, read.graph, tol.atol, tol.rtol)
    return report


@dataclass
class VariantVerdict:
    """A reduced-precision variant, verified: made from this fp32 graph, replaying its golden
    records within its own bounds, and still passing its task gates on held-out data."""

    precision: str
    file: str
    stale: bool
    report: ParityReport | None
    gates: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            not self.stale
            and self.report is not None
            and self.report.passed
            and bool(self.gates.get("passed"))
        )

    def summary(self) -> str:
        if self.stale:
            return (
                f"{self.precision} {self.file}: STALE, made from another fp32 graph; rebuild it "
                f"with edgekit quantize BUNDLE --{self.precision} --force"
            )
        failures = "; ".join(self.gates.get("failures", [])) or "none"
        if self.report is None:  # it could not run here
            return f"{self.precision} {self.file}: NOT RUN ({failures})"
        return (
            f"{self.precision} {self.file}: golden replay {'ok' if self.report.passed else 'FAIL'}, "
            f"gates {'ok' if self.gates.get('passed') else 'FAIL'} (failures: {failures})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "file": self.file,
            "stale": self.stale,
            "passed": self.passed,
            "report": self.report.to_dict() if self.report else None,
            "gates": self.gates,
        }


def verify_variants(bundle: str | Path) -> list[VariantVerdict]:
    """Every variant of `bundle`, checked again (no timing: speed is not a verdict)."""
    from edgekit.exporters.quantize.data import data_split_of
    from edgekit.exporters.quantize.gates import measure
    from edgekit.files import sha256_file
    from edgekit.runtimes.golden import replay

    read = Bundle.read(bundle)
    bundle, manifest = read.path, read.manifest
    parent_sha = sha256_file(read.graph)
    split = data_split_of(manifest)[0] if manifest.variants else None
    verdicts = []
    for v in manifest.variants:
        if v.notes.parent_sha256 != parent_sha:
            verdicts.append(VariantVerdict(v.precision, v.file, True, None))
            continue
        seen = manifest.at(v.precision)
        step = bundle / v.step_file if v.step_file else None  # its one-token graph
        if v.runtime is not None:  # one backend computes it (bf16: OpenVINO)
            verdicts.append(_on_its_runtime(read, v, split))
            continue
        backend = OrtBackend(
            bundle / v.file, manifest.contract, optimization=seen.optimization, step_graph=step
        )
        report = replay(bundle, seen, backend)
        gates = measure(
            bundle,
            manifest,
            bundle / v.file,
            split,
            optimization=seen.optimization,
            variant_step=step,
        )
        files = v.file + (f" + {v.step_file} (steps)" if step else "")
        verdicts.append(VariantVerdict(v.precision, files, False, report, gates))
    return verdicts


def _on_its_runtime(read: Bundle, v: Any, split: Any) -> VariantVerdict:
    """A variant that one backend computes (bf16 on OpenVINO), checked again there: its golden
    replay and its gates against fp32 ONNX Runtime."""
    from edgekit.exporters.quantize.gates import measure_backends
    from edgekit.runtimes import registry
    from edgekit.runtimes.golden import replay

    entry = registry.get(v.runtime)
    seen = read.manifest.at(v.precision, entry.device)
    reason = entry.unavailable(read.path, seen)
    if reason is not None:
        gates = {"passed": False, "failures": [f"cannot run here: {reason}"]}
        return VariantVerdict(v.precision, f"{v.file} on {v.runtime}", False, None, gates)
    backend = entry.open(read.path, seen, registry.OpenOptions(threads=1))
    fp32 = OrtBackend(read.graph, read.contract, threads=1, step_graph=read.step_graph)
    gates = measure_backends(read, fp32, backend, split)
    report = replay(read.path, seen, backend)
    return VariantVerdict(v.precision, f"{v.file} on {v.runtime}", False, report, gates)
