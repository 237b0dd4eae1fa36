"""`edgekit triton`: a Triton Inference Server model repository from a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import PrecisionOption, app, print_json, user_errors


@app.command()
@user_errors
def triton(
    bundle: Annotated[Path, typer.Argument(help="a bundle directory (from edgekit export)")],
    out: Annotated[Path, typer.Option(help="the model repository to write")],
    name: Annotated[
        str | None, typer.Option(help="model name (default: the bundle's folder)")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="max_batch_size for batchable models")] = 32,
    precision: PrecisionOption = "fp32",
    force: Annotated[bool, typer.Option(help="replace an existing repository")] = False,
    batch_sequences: Annotated[
        bool,
        typer.Option(
            "--batch-sequences/--one-stream",
            help="recurrent bundles: a batch-first copy of the graph (checked against it) so "
            "Triton batches concurrent sequences, or the bundle's own graph, one stream per call",
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="print what was written as JSON")
    ] = False,
) -> None:
    """Write a Triton model repository (config.pbtxt + 1/model.onnx) that Triton loads as is."""
    from edgekit.exporters.triton_repository import write_repository

    written = write_repository(bundle, out, name, max_batch, precision, force, batch_sequences)
    if json_out:
        print_json(written)
        return
    for model, how in written["models"].items():
        typer.echo(f"{out / model}: {how}")
