"""The parts of a bundle manifest, each a frozen dataclass with from_json / to_json (torch-free).

Fields a reader uses are typed; what only reports show travels in `details` and is written back
as it was read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgekit.bundle.engine import Engine as Engine  # re-exported: a part of the manifest
from edgekit.bundle.gates import Gates, VariantNotes

# fp32 tolerances. Torch (oneDNN) and ONNX Runtime (MLAS) sum in different orders and fuse
# differently, which moves fp32 results by ~1e-6 relative per layer; deep conv stacks and long
# recurrences accumulate that to ~1e-5. atol 1e-4 / rtol 1e-3 leaves a 10x margin over what we
# measure, and still catches real export bugs (a wrong GRU gate layout differs by ~1e-1).
DEFAULT_ATOL, DEFAULT_RTOL = 1e-4, 1e-3


@dataclass(frozen=True)
class Tolerance:
    """|candidate - reference| <= atol + rtol * |reference|, per output."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Tolerance:
        return cls(float(doc["atol"]), float(doc["rtol"]))

    def to_json(self) -> dict[str, float]:
        return {"atol": self.atol, "rtol": self.rtol}


@dataclass(frozen=True)
class FileRecord:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class StepGraph:
    """The one-token step graph of a recurrent bundle (or why there is none)."""

    used: bool  # steps run on it (it measured faster than the sequence graph's step)
    file: str | None = None  # kept even when not used: quantize derives its int8 step graph from it
    why: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)  # "speed", "checked"

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> StepGraph:
        rest = {k: v for k, v in doc.items() if k not in ("used", "file", "why")}
        return cls(bool(doc.get("used")), doc.get("file"), str(doc.get("why", "")), rest)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"used": self.used, **self.details}
        if self.file is not None:
            doc["file"] = self.file
        if self.why:
            doc["why"] = self.why
        return doc

    @property
    def speed_ratio(self) -> float | None:
        """The step graph's time over the sequence graph's, as measured at export."""
        speed = self.details.get("speed")
        return float(speed["ratio"]) if isinstance(speed, Mapping) and "ratio" in speed else None


@dataclass(frozen=True)
class Variant:
    """A reduced-precision graph made by `edgekit quantize`, with the gates it passed."""

    precision: str  # "int8" | "fp16" | "bf16"
    file: str  # bf16: the fp32 graph itself, which OpenVINO computes in bf16
    tolerance: Tolerance
    optimization: str = "all"  # the ORT optimisation level it was measured at
    case_atol: Mapping[str, float] = field(default_factory=dict)  # golden case -> its own bound
    step_file: str | None = None  # its own one-token graph
    gates: Mapping[str, Any] = field(default_factory=dict)  # accuracy, agreement and speed gates
    forced: bool = False  # kept although a gate failed (--force)
    details: Mapping[str, Any] = field(default_factory=dict)  # recipe, calibration, notes

    KNOWN = ("precision", "file", "tolerance", "optimization", "case_atol", "step_file", "gates",
             "forced")  # fmt: skip

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Variant:
        return cls(
            doc["precision"],
            doc["file"],
            Tolerance.from_json(doc["tolerance"]),
            doc.get("optimization", "all"),
            {str(k): float(v) for k, v in (doc.get("case_atol") or {}).items()},
            doc.get("step_file"),
            doc.get("gates") or {},
            bool(doc.get("forced", False)),
            {k: v for k, v in doc.items() if k not in cls.KNOWN},
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            **self.details,
            "precision": self.precision,
            "file": self.file,
            "tolerance": self.tolerance.to_json(),
            "optimization": self.optimization,
            "case_atol": dict(self.case_atol),
            "gates": dict(self.gates),
            "forced": self.forced,
        }
        if self.step_file is not None:
            doc["step_file"] = self.step_file
        return doc

    @classmethod
    def of(cls, precision: str, record: Variant | Mapping[str, Any]) -> Variant:
        """A Variant, or its record (callers may hold no more than its gates)."""
        if isinstance(record, Variant):
            return record
        if "file" in record:
            return cls.from_json({"precision": precision, **record})
        return cls(precision, "", Tolerance(), gates=record.get("gates") or {})

    @property
    def speed_ratio(self) -> float:
        """Its step or call time over fp32's at quantize time (< 1: faster); 1.0 if unmeasured."""
        speed = self.gates.get("speed") or {}
        return float(speed.get("ratio", 1.0))

    @property
    def passed(self) -> bool:
        return bool(self.gates.get("passed", not self.forced))

    @property
    def measured(self) -> Gates:
        """The gate measurements, typed."""
        return Gates.from_json(self.gates)

    @property
    def notes(self) -> VariantNotes:
        """How it was made (recipe, sizes, what stayed in float), typed."""
        return VariantNotes.from_json(self.details)

    @property
    def files(self) -> list[str]:
        return [self.file] + ([self.step_file] if self.step_file else [])

    @property
    def runtime(self) -> str | None:
        """The one backend that runs it, where only one can (bf16: "openvino"); None: any."""
        runtime = self.details.get("runtime")
        return str(runtime) if runtime else None


@dataclass(frozen=True)
class GoldenCase:
    """One golden case: random inputs regenerated from `seed`, or inputs stored under `key`."""

    case: str  # its name in reports, e.g. "export shapes B=2 T=3"
    key: str  # the prefix of its arrays in the golden file
    sizes: Mapping[str, int] | None = None  # random cases: the size of every axis
    seed: int | None = None
    inputs_sha256: str | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> GoldenCase:
        return cls(
            str(doc["case"]),
            str(doc["key"]),
            doc.get("sizes"),
            doc.get("seed"),
            doc.get("inputs_sha256"),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"case": self.case, "key": self.key}
        if self.seed is not None:
            doc |= {"sizes": dict(self.sizes or {}), "seed": self.seed,
                    "inputs_sha256": self.inputs_sha256}  # fmt: skip
        return doc


@dataclass(frozen=True)
class Golden:
    """Torch's outputs at export (`golden.npz`), replayed by `edgekit check` on any backend."""

    file: str
    cases: tuple[GoldenCase, ...]
    rollout_steps: int | None = None  # recurrent bundles: a greedy rollout of this many steps
    bytes: int = 0

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Golden:
        rollout = doc.get("rollout")
        return cls(
            doc["file"],
            tuple(GoldenCase.from_json(c) for c in doc.get("cases", [])),
            int(rollout["steps"]) if isinstance(rollout, Mapping) else None,
            int(doc.get("bytes", 0)),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "file": self.file,
            "cases": [c.to_json() for c in self.cases],
            "bytes": self.bytes,
        }
        if self.rollout_steps is not None:
            doc["rollout"] = {"steps": self.rollout_steps}
        return doc


@dataclass(frozen=True)
class Source:
    """What the bundle was exported from: a zoo checkpoint, or a user's module."""

    sha256: str  # of the checkpoint's weights, or of the module's state dict
    checkpoint: str | None = None  # zoo: its path at export
    module: str | None = None  # user module: its class
    data: Mapping[str, Any] | None = None  # zoo: how its data was drawn (to rebuild the split)
    metrics: Mapping[str, Any] | None = None
    factory: str | None = None  # `export --module`: FILE.py:FACTORY as resolved at export
    weights: str | None = None  # and its --weights file, if any

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Source:
        return cls(
            str(doc.get("sha256", "")),
            doc.get("checkpoint"),
            doc.get("module"),
            doc.get("data"),
            doc.get("metrics"),
            doc.get("factory"),
            doc.get("weights"),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"sha256": self.sha256}
        for key in ("checkpoint", "module", "data", "metrics", "factory", "weights"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        return doc


@dataclass(frozen=True)
class ExporterRecord:
    name: str  # the exporter whose graph passed: "dynamo" | "torchscript" | "script"
    opset: int
    requested: str = "auto"
    attempts: tuple[Mapping[str, Any], ...] = ()  # every exporter tried, with why it failed
    step_only_why: str = ""  # why export chose the one-token step alone, where it was not asked

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ExporterRecord:
        return cls(
            str(doc.get("name", "")),
            int(doc.get("opset", 0)),
            str(doc.get("requested", "auto")),
            tuple(doc.get("attempts") or ()),
            str(doc.get("step_only_why") or ""),
        )

    def to_json(self) -> dict[str, Any]:
        doc = {"name": self.name, "opset": self.opset, "requested": self.requested,
               "attempts": list(self.attempts)}  # fmt: skip
        if self.step_only_why:
            doc["step_only_why"] = self.step_only_why
        return doc


@dataclass(frozen=True)
class ParityRecord:
    """The parity report measured at export, as `ParityReport.to_dict` wrote it."""

    report: Mapping[str, Any]
    real_data_note: str = ""

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ParityRecord:
        rest = {k: v for k, v in doc.items() if k != "real_data_note"}
        return cls(rest, str(doc.get("real_data_note") or ""))

    def to_json(self) -> dict[str, Any]:
        return {**self.report, "real_data_note": self.real_data_note}

    @property
    def passed(self) -> bool:
        return bool(self.report.get("passed"))

    @property
    def tolerance(self) -> Tolerance:
        """The tolerances the report was judged at."""
        return Tolerance(float(self.report.get("atol", 0.0)), float(self.report.get("rtol", 0.0)))
