"""The manifest's record of a TensorRT engine built into a bundle (torch-free)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Engine:
    """A TensorRT engine built for one GPU, compute capability and TensorRT version."""

    file: str
    gpu: str
    compute_capability: str
    tensorrt: str
    max_batch: int
    max_seq: int
    fp16: bool = False
    parity: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)  # "profile", timing

    KNOWN = ("file", "gpu", "compute_capability", "tensorrt", "max_batch", "max_seq", "fp16",
             "parity")  # fmt: skip

    @classmethod
    def of(cls, record: Engine | Mapping[str, Any]) -> Engine:
        """An Engine, or its record as written to JSON (callers may hold part of one)."""
        return record if isinstance(record, Engine) else cls.from_json(record)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Engine:
        return cls(
            str(doc.get("file", "")),
            str(doc.get("gpu", "")),
            str(doc.get("compute_capability", "")),
            str(doc.get("tensorrt", "")),
            int(doc.get("max_batch", 1)),
            int(doc.get("max_seq", 1)),
            bool(doc.get("fp16", False)),
            doc.get("parity") or {},
            {k: v for k, v in doc.items() if k not in cls.KNOWN},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **self.details,
            "file": self.file,
            "gpu": self.gpu,
            "compute_capability": self.compute_capability,
            "tensorrt": self.tensorrt,
            "max_batch": self.max_batch,
            "max_seq": self.max_seq,
            "fp16": self.fp16,
            "parity": dict(self.parity),
        }

    @property
    def max_abs(self) -> float:
        """The engine's largest difference from ONNX Runtime when it was built."""
        return float(self.parity.get("max_abs", float("nan")))

    def fits(self, gpu: str, compute_capability: str, tensorrt: str) -> bool:
        return (self.gpu, self.compute_capability, self.tensorrt) == (
            gpu,
            compute_capability,
            tensorrt,
        )
