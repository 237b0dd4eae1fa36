"""`edgekit quantize`: an int8, fp16 or bf16 variant of a bundle, kept only when it passes its gates."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from edgekit.bundle.manifest import Variant
from edgekit.cli.app import app, fail, print_json, shows_stages, user_errors


@app.command()
@user_errors
@shows_stages
def quantize(
    bundle: Annotated[Path, typer.Argument(help="a bundle directory (from edgekit export)")],
    int8: Annotated[bool, typer.Option("--int8", help="an int8 variant")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="an fp16 variant (for GPUs)")] = False,
    bf16: Annotated[
        bool,
        typer.Option("--bf16", help="a bf16 variant: OpenVINO's bf16 arithmetic, on CPUs with it"),
    ] = False,
    mode: Annotated[
        str | None,
        typer.Option(
            help="int8: dynamic | static (default: static for convolutions, else dynamic)"
        ),
    ] = None,
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--per-tensor", help="int8 weight scales per channel")
    ] = True,
    reduce_range: Annotated[
        bool, typer.Option(help="int8: 7-bit weights (for CPUs without VNNI)")
    ] = False,
    calibration: Annotated[
        Path | None,
        typer.Option(help="static int8: an .npz of real inputs (default: the model's own data)"),
    ] = None,
    replace: Annotated[bool, typer.Option(help="rebuild an existing variant")] = False,
    force: Annotated[
        bool,
        typer.Option(
            help="keep a variant that misses its gates or does not pay (implies --replace)"
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the record as JSON")] = False,
) -> None:
    """Add a reduced-precision variant to a bundle, gated on held-out data against fp32 and torch."""
    if int8 + fp16 + bf16 != 1:
        fail("say which variant to build: --int8, --fp16 or --bf16 (one of them)", 2)
    if (fp16 or bf16) and (mode or not per_channel or reduce_range or calibration):
        fail("--mode, --per-tensor, --reduce-range and --calibration are int8 options", 2)
    from edgekit.exporters.quantize import DoesNotPay, quantize_bundle

    try:
        record = quantize_bundle(
            bundle,
            "int8" if int8 else "fp16" if fp16 else "bf16",
            mode,
            per_channel,
            reduce_range,
            force,
            calibration,
            replace=replace,
        )
    except DoesNotPay as exc:  # a decision, not an error: exit 0, nothing written
        if as_json:
            print_json({"precision": "int8" if int8 else "fp16", "kept": False, "reason": str(exc)})
        else:
            typer.echo(str(exc))
        return
    if as_json:
        print_json(record)
        return
    typer.echo(summary(bundle, record))


def summary(bundle: Path, record: Variant | Mapping[str, Any]) -> str:
    """The variant in a few lines: recipe, what stayed in float, size, gates and speed."""
    v = record if isinstance(record, Variant) else Variant.from_json(record)
    g, notes = v.measured, v.notes
    float_ops = ", ".join(notes.float_ops) or "nothing"
    made = (
        f"{bundle / v.file} on {v.runtime} only (no file of its own; {notes.recipe_why})"
        if v.runtime
        else f"{bundle / v.file} (adds {notes.bytes_ratio or 0:.2f}x the fp32 file; "
        f"{notes.recipe_why})"
    )
    lines = [
        f"{v.precision} variant: {made}",
        f"left in float: {float_ops}"
        + (f" ({notes.float_weight_share or 0:.0%} of the weights)" if notes.float_ops else "")
        + (" in the sequence graph (prompts)" if notes.float_ops and v.step_file else ""),
        f"held out: {g.held_out or 'none'}",
    ]
    if notes.prompts:
        lines.insert(2, f"prompts: {notes.prompts}")
    if v.step_file:
        lines.insert(
            2,
            f"steps: {v.step_file}, the one-token graph with every matrix product "
            f"{v.precision} ({notes.step_bytes_ratio or 0:.2f}x its fp32 file)",
        )
    if g.accuracy_delta is not None:
        lines.append(
            f"accuracy {g.accuracy_variant or 0:.2%} vs fp32 {g.accuracy_fp32 or 0:.2%} "
            f"({g.accuracy_delta:+.2%}); top-1 agreement {g.top1_agreement or 0:.2%} with fp32, "
            f"{g.top1_agreement_torch or 0:.2%} with torch on its golden inputs"
        )
    if g.perplexity_delta is not None:
        divergence = g.first_greedy_divergence
        drift = ", ".join(f"{k} {d:.2%}" for k, d in g.state_drift.items())
        lines += [
            f"perplexity {g.perplexity_variant or 0:.4g} vs fp32 {g.perplexity_fp32 or 0:.4g} "
            f"({g.perplexity_delta:+.2%}); next-token top-1 agreement "
            f"{g.top1_agreement or 0:.2%} with torch's rollout, {g.top1_agreement_text or 0:.2%} "
            "with fp32 on held-out text",
            "greedy text "
            + (
                "never leaves torch's"
                if divergence is None
                else f"leaves torch's at step {divergence}"
            )
            + f" over {g.rollout_steps} steps; state drift {drift} of the state's size",
        ]
    if g.output_error is not None:
        lines.append(
            f"output error {g.output_error:.3%} of the outputs' size "
            f"({g.output_error_torch or 0:.3%} against torch's golden outputs)"
        )
    if g.speed is not None:
        lines.append(
            f"speed at batch 1, 1 thread: {g.speed.variant_us:.0f} us vs fp32 "
            f"{g.speed.fp32_us:.0f} us ({g.speed.ratio:.2f}x)"
            + _speed_note(v.precision, g.speed.ratio)
        )
    lines.append(
        "gates: PASS"
        if g.passed
        else "gates: MISSED (" + "; ".join(g.failures) + "), kept with --force"
    )
    return "\n".join(lines)


def _speed_note(precision: str, ratio: float) -> str:
    if precision == "bf16":
        return " (fp32 here is OpenVINO f32; bf16 runs on device='openvino' only)"
    if precision == "fp16":
        return " (fp16 is for GPUs: `--precision auto` uses it on a GPU, never on a CPU)"
    if ratio >= 1:
        return " (slower on this CPU: `--precision auto` keeps fp32 here)"
    return ""
