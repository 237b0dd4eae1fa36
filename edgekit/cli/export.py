"""`edgekit export`, `engine` and `verify`: checkpoints to verified bundles and engines."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from edgekit.bundle.manifest import Engine
from edgekit.cli.app import (
    DeviceOption,
    PrecisionOption,
    app,
    fail,
    load_bundle,
    print_json,
    shows_stages,
    user_errors,
)


def _require_steps(steps: int) -> None:
    if steps < 1:
        fail(f"--steps must be >= 1 (the rollout is part of the parity proof), got {steps}", 2)


class Exporter(str, Enum):
    auto = "auto"
    dynamo = "dynamo"
    torchscript = "torchscript"
    script = "script"


@app.command()
@user_errors
@shows_stages
def export(
    checkpoint: Annotated[
        Path | None, typer.Argument(help="a checkpoint directory (from edgekit train)")
    ] = None,
    module: Annotated[
        str | None,
        typer.Option(
            "--module",
            help="your own module: FILE.py:FACTORY, a function returning a dict with module, "
            "example_inputs and the I/O description (instead of a checkpoint)",
        ),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="--module: a safetensors state dict to load first")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="bundle directory (default bundles/NAME)")
    ] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's)")] = None,
    exporter: Annotated[Exporter, typer.Option(help="auto picks the one that passes parity")] = (
        Exporter.auto
    ),
    atol: Annotated[
        float | None, typer.Option(help="absolute tolerance (default per model)")
    ] = None,
    rtol: Annotated[
        float | None, typer.Option(help="relative tolerance (default per model)")
    ] = None,
    steps: Annotated[
        int, typer.Option(help="recurrent models: greedy rollout steps checked")
    ] = 200,
    step_only: Annotated[
        bool,
        typer.Option(
            "--step-only",
            help="recurrent models: export the one-token step alone; prompts are fed by stepping",
        ),
    ] = False,
    force: Annotated[bool, typer.Option(help="replace an existing --out")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest as JSON")] = False,
    tensorrt: Annotated[
        bool, typer.Option("--tensorrt", help="also build a TensorRT engine")
    ] = False,
    fp16: Annotated[bool, typer.Option(help="TensorRT: allow FP16 kernels")] = False,
    max_batch: Annotated[int, typer.Option(help="TensorRT: largest batch in the profile")] = 32,
    max_seq: Annotated[int, typer.Option(help="TensorRT: longest time axis in the profile")] = 512,
) -> None:
    """Export a checkpoint (or your own module) to an ONNX bundle, proving parity with PyTorch first."""
    _require_steps(steps)
    if (checkpoint is None) == (module is None):
        fail("give a checkpoint directory or --module FILE.py:FACTORY (one of them)", 2)
    if weights is not None and module is None:
        fail("--weights goes with --module (a checkpoint carries its own weights)", 2)

    if tensorrt:  # fail before the export, not after it
        from edgekit._optional import require
        from edgekit.runtimes.cuda import cudart

        require("tensorrt", "--tensorrt")
        cudart()

    if module is not None:
        from edgekit.bundle.parts import Tolerance
        from edgekit.exporters.result import ExportOptions
        from edgekit.exporters.user_module import plan_from_factory
        from edgekit.exporters.write import write_bundle

        target = out or Path("bundles") / module.rpartition(":")[2]
        plan = plan_from_factory(module, weights)
        default = Tolerance()
        tolerance = Tolerance(
            default.atol if atol is None else atol, default.rtol if rtol is None else rtol
        )
        options = ExportOptions(exporter.value, opset, tolerance, force, steps, step_only)
        result = write_bundle(plan, target, options)
    else:
        from edgekit.exporters import bundle_from_checkpoint

        assert checkpoint is not None
        target = out or Path("bundles") / checkpoint.resolve().name
        result = bundle_from_checkpoint(
            checkpoint, target, exporter.value, opset, atol, rtol, force, steps, step_only
        )
    if as_json:
        print_json(result.manifest.to_json())
        return
    parity, used = result.manifest.parity, result.manifest.exporter
    assert parity is not None and used is not None  # export records both
    typer.echo(result.report.table())
    if parity.real_data_note:
        typer.echo(f"note: {parity.real_data_note}")
    typer.echo(f"exporter: {used.name} (opset {used.opset})")
    if result.manifest.contract.step_only:
        why = f" ({used.step_only_why})" if used.step_only_why else ""
        typer.echo(f"step-only: one token per call; prompts are fed by stepping{why}")
    typer.echo(f"bundle: {result.path}")
    if tensorrt:
        _build_engine(result.path, fp16, max_batch, max_seq, force=True)


def _build_engine(bundle: Path, fp16: bool, max_batch: int, max_seq: int, force: bool) -> None:
    from edgekit.exporters.tensorrt import build_engine_into_bundle

    record = build_engine_into_bundle(bundle, fp16, max_batch, max_seq, force)
    e = record if isinstance(record, Engine) else Engine.from_json(record)
    typer.echo(
        f"engine: {bundle / e.file} ({e.gpu}, sm {e.compute_capability}, "
        f"TensorRT {e.tensorrt}, max abs diff vs ORT {e.max_abs:.3g})"
    )


@app.command()
@user_errors
def engine(
    bundle: Annotated[Path, typer.Argument(help="a bundle directory")],
    fp16: Annotated[bool, typer.Option(help="allow FP16 kernels")] = False,
    max_batch: Annotated[int, typer.Option(help="largest batch in the profile")] = 32,
    max_seq: Annotated[int, typer.Option(help="longest time axis in the profile")] = 512,
    force: Annotated[bool, typer.Option(help="rebuild an existing engine")] = False,
) -> None:
    """Build a TensorRT engine for this machine's GPU into a bundle (needs edgekit-ml[gpu])."""
    from edgekit._optional import require
    from edgekit.bundle.directory import Bundle

    Bundle.read(bundle)  # a bad bundle fails before TensorRT is looked for
    from edgekit.runtimes.cuda import cudart

    require("tensorrt", "edgekit engine")
    cudart()
    _build_engine(bundle, fp16, max_batch, max_seq, force)


def _report_table(report: Mapping[str, Any]) -> str:
    """The parity table of a report as `ParityReport.to_dict` recorded it in the manifest."""
    from edgekit.parity import ParityReport

    return ParityReport.from_dict(report).table()


@app.command()
@user_errors
@shows_stages
def verify(
    bundle: Annotated[Path, typer.Argument(help="a bundle directory (from edgekit export)")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="source checkpoint (default: the manifest's source)")
    ] = None,
    module: Annotated[
        str | None,
        typer.Option(help="source module FILE.py:FACTORY (default: the manifest's source)"),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="with --module: its safetensors weights")
    ] = None,
    steps: Annotated[
        int, typer.Option(help="recurrent models: greedy rollout steps checked")
    ] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Re-run the parity checks of a bundle against its source (the checkpoint or module it was
    exported from, as its manifest records); exit 0 or 1."""
    _require_steps(steps)
    if weights is not None and module is None:
        fail("--weights goes with --module (a checkpoint carries its own weights)", 2)
    from edgekit.exporters.verify import verify_bundle, verify_variants

    report = verify_bundle(bundle, checkpoint, steps, module, weights)
    variants = verify_variants(bundle)  # each reduced-precision variant too
    _print_verdict("verify", bundle, report, as_json, variants)


def _print_verdict(
    command: str, bundle: Path, report: Any, as_json: bool, variants: list[Any] | None = None
) -> None:
    variants = variants or []
    passed = report.passed and all(v.passed for v in variants)
    if as_json:
        print_json(
            {**report.to_dict(), "variants": [v.to_dict() for v in variants], "all_passed": passed}
        )
    else:
        typer.echo(report.table())
        for v in variants:
            typer.echo(f"variant {v.summary()}")
        typer.echo(f"{command}: {'PASS' if passed else 'FAIL'} ({bundle})")
    if not passed:
        raise typer.Exit(1)


@app.command()
@user_errors
def check(
    bundle: Annotated[Path, typer.Argument(help="a bundle directory")],
    device: DeviceOption = "cpu",
    precision: PrecisionOption = "fp32",
    backend: Annotated[
        str | None,
        typer.Option(help="a backend by its registry name instead (e.g. trt, ort-cuda-graph)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Replay the bundle's golden records on a device, torch-free; exit 0 or 1."""
    if backend is None:
        report = load_bundle(bundle, device, precision).check()
    else:
        from edgekit.bundle.directory import Bundle
        from edgekit.runtimes import registry
        from edgekit.runtimes.golden import replay

        seen = Bundle.read(bundle).at(precision, registry.get(backend).device)
        report = replay(
            bundle, seen.manifest, registry.open_backend(backend, bundle, seen.manifest)
        )
    _print_verdict("check", bundle, report, as_json)
