"""The exporters' typed side of the bundle: what export returns, what it writes, the timing module."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import edgekit
from edgekit.bundle import Bundle, Golden, Manifest, Tolerance
from edgekit.bundle.parts import ExporterRecord, ParityRecord, Source
from edgekit.errors import InputError
from edgekit.exporters.module_io import Declarations
from edgekit.exporters.plan import plan_from_module
from edgekit.exporters.result import ExportOptions, ExportResult
from edgekit.exporters.write import write_bundle


class Affine(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


AXES = {"input.0": {0: "batch"}, "output": {0: "batch"}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("typed") / "b"
    result = edgekit.export(Affine().eval(), torch.randn(2, 4), out, dynamic_axes=AXES, steps=0)
    assert isinstance(result, ExportResult)
    return result


def test_export_returns_the_bundle_typed_and_unpacks_as_before(exported: ExportResult) -> None:
    path, doc = exported  # the older (path, manifest document) form
    assert path == exported.path == exported[0] and doc == exported[1]
    assert doc["parity"]["passed"] and doc["graph"] == "model.onnx"
    manifest = exported.manifest
    assert isinstance(manifest, Manifest) and manifest.to_json() == doc
    assert exported.report.passed and manifest.parity is not None and manifest.parity.passed
    # what was written is what was returned
    assert Bundle.read(path).manifest == manifest


def test_the_written_manifest_is_built_from_typed_parts(exported: ExportResult) -> None:
    m = exported.manifest
    assert m.tolerance == Tolerance()
    assert isinstance(m.exporter, ExporterRecord) and m.exporter.requested == "auto"
    assert m.exporter.name in ("dynamo", "torchscript", "script") and m.exporter.attempts
    assert isinstance(m.parity, ParityRecord)
    assert m.parity.real_data_note == "no real data for a user module"
    assert (
        isinstance(m.source, Source) and m.source.module == "Affine" and m.source.checkpoint is None
    )
    assert isinstance(m.golden, Golden) and m.golden.file == "golden.npz"
    assert (
        m.golden.rollout_steps is None
        and m.golden.bytes == (exported.path / "golden.npz").stat().st_size
    )
    assert all(c.seed is not None and c.inputs_sha256 for c in m.golden.cases)
    assert m.step_graph is None and m.variants == () and m.engines == ()
    assert m.model == "Affine" and m.input_tree and m.versions["edgekit"] == edgekit.__version__
    assert set(m.files) == {"model.onnx", "golden.npz"}


def test_write_bundle_takes_one_options_object(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plan = plan_from_module(Affine().eval(), torch.randn(2, 4), Declarations(dynamic_axes=AXES))
    options = ExportOptions("torchscript", None, Tolerance(2e-4, 1e-3), False, 0)
    typed = write_bundle(plan, tmp_path / "a", options)
    assert typed.manifest.exporter is not None and typed.manifest.exporter.name == "torchscript"
    assert typed.manifest.tolerance == Tolerance(2e-4, 1e-3)
    path, doc = typed  # the older (path, document) pair
    assert doc["tolerance"] == {"atol": 2e-4, "rtol": 1e-3} and path == tmp_path / "a"
    with pytest.raises(InputError, match="already exists"):
        write_bundle(plan, tmp_path / "a", options)
