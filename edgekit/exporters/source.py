"""A bundle's torch reference, rebuilt from its source: the zoo checkpoint, or the module factory
(`FILE.py:FACTORY`, with its `--weights`) that `edgekit export --module` recorded in the manifest.

A checkpoint or factory given explicitly takes the recorded one's place (a bundle moved to another
machine). Either way the rebuilt weights must have the sha256 the manifest recorded, so a reference
is never silently another model.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.exporters.plan import Plan, plan_from_checkpoint


def source_plan(
    manifest: Manifest,
    checkpoint: str | Path | None = None,
    module: str | None = None,
    weights: str | Path | None = None,
) -> Plan:
    """The Plan (torch module, contract, real data) of the bundle's source."""
    from edgekit.exporters.user_module import plan_from_factory

    source = manifest.source
    if checkpoint is not None and ".py:" in str(checkpoint):
        raise InputError(
            f"--checkpoint takes a checkpoint directory; {checkpoint} is a module factory: pass "
            "it as --module FILE.py:FACTORY"
        )
    if checkpoint is not None and module is not None:
        raise InputError("give the source as --checkpoint or as --module, not both")
    if checkpoint is None and module is None and source is not None:
        checkpoint, module = source.checkpoint, source.factory
        if module is not None and weights is None:
            weights = source.weights
    if checkpoint is not None:
        plan, what = plan_from_checkpoint(checkpoint), f"checkpoint {checkpoint}"
    elif module is not None:
        plan = plan_from_factory(module, None if weights is None else Path(weights))
        what = f"module {module}" + (f" with weights {weights}" if weights else "")
    else:
        raise InputError(
            "this bundle records no source (it was exported from Python with edgekit.export); "
            "give it as --checkpoint DIR or --module FILE.py:FACTORY [--weights W.safetensors]"
        )
    planned = plan.described.source
    if (planned.sha256 if planned else None) != (source.sha256 if source else None):
        raise InputError(
            f"{what} is not this bundle's source: its weights' sha256 differs from the manifest's "
            "source.sha256 (a factory must build the same weights each time: seed it, or pass "
            "--weights)"
        )
    return plan


def source_unavailable(manifest: Manifest) -> str | None:
    """Why the bundle's recorded source cannot be rebuilt here, or None if it looks available
    (the sha256 is checked when it is rebuilt)."""
    source = manifest.source
    if source is not None and source.checkpoint is not None:
        if not Path(source.checkpoint).is_dir():
            return f"its source checkpoint {source.checkpoint} is not on this machine"
        return None
    if source is not None and source.factory is not None:
        file = source.factory.rpartition(":")[0]
        if not Path(file).is_file():
            return f"its source module {file} is not on this machine"
        if source.weights is not None and not Path(source.weights).is_file():
            return f"its source weights {source.weights} are not on this machine"
        return None
    return "no source checkpoint or module is recorded (exported from Python, or a plain .onnx)"
