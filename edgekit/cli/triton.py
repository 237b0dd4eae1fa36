"""`edgekit triton`: a Triton Inference Server model repository from a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import PrecisionOption, app, fail, print_json, user_errors


@app.command()
@user_errors
def triton(
    bundles: Annotated[
        list[str],
        typer.Argument(
            help="bundle directories (from edgekit export), each PATH or NAME=PATH",
            metavar="BUNDLE",
        ),
    ],
    out: Annotated[Path, typer.Option(help="the model repository to write")],
    name: Annotated[
        str | None, typer.Option(help="model name, for one bundle (default: its folder)")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="max_batch_size for batchable models")] = 32,
    precision: PrecisionOption = "fp32",
    force: Annotated[
        bool, typer.Option(help="replace an existing repository (all its models)")
    ] = False,
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
    """Write a Triton model repository (config.pbtxt + 1/model.onnx per bundle) that Triton loads
    as is; several bundles make one repository, written at once."""
    from edgekit.exporters.triton_repository import write_models
    from edgekit.serve.models import parse_bundle_arg

    if name is not None and len(bundles) != 1:
        fail("--name names one bundle; name several with NAME=PATH", 2)
    named = [parse_bundle_arg(b) for b in bundles]
    if name is not None:
        named = [(name, named[0][1])]
    written = write_models(named, out, max_batch, precision, force, batch_sequences)
    if json_out:
        print_json(written)
        return
    for model, how in written["models"].items():
        typer.echo(f"{out / model}: {how}")
