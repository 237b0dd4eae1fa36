"""What an export returns and takes: the written bundle with its manifest and parity report, and
the options every export path shares (the API, the CLI, `--module`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bundle.directory import Bundle
from edgekit.bundle.manifest import Manifest
from edgekit.bundle.parts import Tolerance
from edgekit.parity import ParityReport


@dataclass(frozen=True)
class ExportOptions:
    """How to export: which exporter and opset, the parity bounds, the rollout length."""

    exporter: str = "auto"  # "auto" or one of edgekit.exporters.onnx.EXPORTERS
    opset: int | None = None  # None: the exporter's default
    tolerance: Tolerance = field(default_factory=Tolerance)
    force: bool = False  # replace an existing output directory
    steps: int = 200  # recurrent models: greedy rollout steps checked
    step_only: bool = False  # recurrent models: the one-token step alone (time fixed at 1)


@dataclass(frozen=True)
class ExportResult:
    """A written bundle. Unpacks (and indexes) as the older `(path, manifest document)` pair:
    `path, manifest = export(...)`, `bundle_from_checkpoint(...)[0]`."""

    bundle: Bundle
    report: ParityReport

    @property
    def path(self) -> Path:
        return self.bundle.path

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    def _pair(self) -> tuple[Path, dict[str, Any]]:
        return self.path, self.manifest.to_json()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._pair())

    def __getitem__(self, index: int) -> Any:
        return self._pair()[index]

    def __len__(self) -> int:
        return 2
