"""Parity assertions for your own test suite: plain pytest, no edgekit fixtures.

    from edgekit.testing import assert_parity, assert_rollout

    def test_my_bundle():
        assert_parity(MyModel().eval(), "bundles/mine")           # or a checkpoint directory
        assert_rollout(MyLM().eval(), "bundles/lm", steps=500)   # recurrent bundles

Each raises AssertionError whose message is the parity table (every output, max abs / rel
difference, the rollout's drift per state and its greedy choices), and returns the report when
the bundle passes. Needs torch (the reference) and the `train` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.manifest import Manifest
from edgekit.parity import ParityReport


def _setup(reference: Any, bundle: str | Path, device: str) -> tuple[Any, Any, Any, Manifest]:
    """(plan, torch reference backend, candidate backend, manifest) for `bundle`."""
    from edgekit.bundle.directory import Bundle
    from edgekit.exporters.plan import Plan, plan_from_checkpoint
    from edgekit.reference.torch_backend import TorchBackend
    from edgekit.runtimes.loader import backend_for_device
    from edgekit.runtimes.registry import open_backend

    bundle = Path(bundle)
    manifest = Bundle.read(bundle).manifest
    contract = manifest.contract
    if isinstance(reference, (str, Path)):
        plan = plan_from_checkpoint(reference)
    else:
        from edgekit.exporters.module_io import FlatIO, input_tree

        module = FlatIO(reference.eval(), input_tree(manifest))
        plan = Plan(module, contract, manifest, [], "")
    candidate = open_backend(backend_for_device(device), bundle, manifest)
    return plan, TorchBackend(plan.module, contract), candidate, manifest


def _tolerance(manifest: Manifest, atol: float | None, rtol: float | None) -> tuple[float, float]:
    tol = manifest.tolerance
    return (tol.atol if atol is None else atol), (tol.rtol if rtol is None else rtol)


def assert_parity(
    reference: Any,
    bundle: str | Path,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    steps: int = 200,
    device: str = "cpu",
) -> ParityReport:
    """The export-time parity suite, run now: `reference` (an nn.Module or a checkpoint directory)
    against `bundle` on `device`; tolerances default to the bundle's own."""
    from edgekit.exporters.check import parity_suite

    plan, ref, candidate, manifest = _setup(reference, bundle, device)
    atol, rtol = _tolerance(manifest, atol, rtol)
    report = parity_suite(ref, candidate, plan, atol, rtol, steps)
    if not report.passed:
        raise AssertionError(f"parity failed for {bundle}:\n{report.table()}")
    return report


def assert_rollout(
    reference: Any,
    bundle: str | Path,
    *,
    steps: int = 200,
    prompt: list[int] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    device: str = "cpu",
) -> ParityReport:
    """A greedy rollout of `steps` tokens, judged as export judges it (state drift relative to each
    state's size, no greedy choice that differs where torch's choice was clear)."""
    from edgekit.rollout import rollout

    _, ref, candidate, manifest = _setup(reference, bundle, device)
    atol, rtol = _tolerance(manifest, atol, rtol)
    ids = np.array([prompt or [0]], dtype=np.int64)
    report = ParityReport(ref.name, candidate.name, atol, rtol)
    report.rollout = rollout(ref.stepper(1), candidate.stepper(1), atol, rtol, ids, steps)
    if not report.passed:
        raise AssertionError(f"rollout failed for {bundle}:\n{report.table()}")
    return report
