"""`edgekit bench`: latency percentiles of every backend on one bundle."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgekit.cli.app import app, fail, print_json, user_errors


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        fail(f"{flag} must be comma-separated positive integers, got {text!r}", 2)
    return values


@app.command()
@user_errors
def bench(
    bundle: Annotated[Path, typer.Argument(help="a bundle directory, or a plain .onnx file")],
    backends: Annotated[
        str | None,
        typer.Option(
            help="comma-separated, of torch, torch-cuda, torch-cuda-graph, ort-cpu, ort-cuda, "
            "ort-cuda-graph, ort-trt, trt, openvino (default: every one that runs here)"
        ),
    ] = None,
    batch: Annotated[
        str, typer.Option(help="batch sizes (streams for generation), e.g. 1,8,32")
    ] = "1,8,32",
    warmup: Annotated[
        int | None, typer.Option(help="warm-up iterations per case (default 20)")
    ] = None,
    warmup_s: Annotated[float | None, typer.Option(help="or: warm-up seconds per case")] = None,
    iters: Annotated[
        int | None, typer.Option(help="timed iterations per case (default 200)")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="or: timed seconds per case")] = None,
    rounds: Annotated[int, typer.Option(help="interleaved rounds across backends")] = 5,
    precision: Annotated[
        str,
        typer.Option(help="all (fp32 and every variant in the bundle) or a list, e.g. fp32,int8"),
    ] = "all",
    threads: Annotated[
        int | None, typer.Option(help="intra-op threads (default: the runtime's)")
    ] = None,
    cold_start: Annotated[
        bool, typer.Option(help="measure cold start and peak RSS per backend")
    ] = True,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="print the result document on stdout instead of the table; --json FILE writes "
            "it to FILE as well as printing the table",
        ),
    ] = None,
    markdown_out: Annotated[
        Path | None, typer.Option("--markdown", help="write a markdown report")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="write a PNG of the latency distributions")
    ] = None,
    repeat: Annotated[
        int,
        typer.Option(help="run the whole comparison in N fresh processes; ratios get intervals"),
    ] = 1,
    compare: Annotated[
        Path | None,
        typer.Option(help="a saved --json run: exit 1 if a row got slower (same machine)"),
    ] = None,
    wide: Annotated[
        bool, typer.Option(help="every column: all percentiles, p50's interval, FMA peak")
    ] = False,
    max_regression: Annotated[
        str, typer.Option(help="with --compare: how much slower a median may get")
    ] = "10%",
) -> None:
    """Latency percentiles of every backend on one bundle, side by side with PyTorch."""
    from edgekit.bench import report
    from edgekit.bench.core import run_bench
    from edgekit.bench.runner import Budget
    from edgekit.runtimes import registry

    if warmup is not None and warmup_s is not None:
        fail("give --warmup or --warmup-s, not both", 2)
    if iters is not None and duration is not None:
        fail("give --iters or --duration, not both", 2)
    if rounds < 1:
        fail(f"--rounds must be >= 1, got {rounds}", 2)
    to_stdout = json_out is not None and str(json_out) == "-"
    if to_stdout:
        json_out = None
    for path, flag in ((json_out, "--json"), (markdown_out, "--markdown"), (plot, "--plot")):
        report.check_output_path(path, flag)
    if plot is not None:
        from edgekit._optional import require

        require("matplotlib", "--plot")
    from edgekit.bench import compare as comparing

    allowance = comparing.parse_regression(max_regression)
    baseline = comparing.read_baseline(compare) if compare is not None else None
    budget = Budget(
        warmup=None if warmup_s is not None else (20 if warmup is None else warmup),
        warmup_s=warmup_s,
        iters=None if duration is not None else (200 if iters is None else iters),
        duration_s=duration,
        rounds=rounds,
    )
    from edgekit.progress import progress_bar

    class _Progress:
        def __init__(self) -> None:
            self.ctx: Any = None

        def __call__(self, label: str, total: int) -> Callable[[int], None]:
            self.ctx = progress_bar(total, label, sys.stderr.isatty(), metric=None)
            tick = self.ctx.__enter__()
            return lambda n: tick(float(n))

    from edgekit.runtimes.plain_onnx import as_bundle, is_plain_onnx

    if repeat != 1:
        from edgekit.bench.repeat import lines, run_repeated

        if is_plain_onnx(bundle):
            fail("--repeat runs bundles; export the model to a bundle first", 2)

        if plot is not None:
            fail("--plot draws one run's samples; it does not go with --repeat", 2)

        doc = run_repeated(
            repeat,
            bundle,
            registry.parse(backends),
            _int_list(batch, "--batch"),
            budget,
            threads,
            precision,
        )
        if not to_stdout:
            report.print_report(doc, wide)
            typer.echo("\n".join(lines(doc)))
        _write_and_compare(doc, json_out, markdown_out, plot, baseline, allowance, to_stdout)
        return
    prog = _Progress()
    target: Any = bundle
    if is_plain_onnx(bundle):  # no manifest: ONNX Runtime's backends only, no cold start
        target, cold_start = as_bundle(bundle), False
    try:
        doc = run_bench(
            target,
            registry.parse(backends),
            _int_list(batch, "--batch"),
            budget,
            threads,
            cold_start,
            prog,
            precision=precision,
        )
    finally:
        if prog.ctx is not None:
            prog.ctx.__exit__(None, None, None)
    if not to_stdout:
        report.print_report(doc, wide)
    _write_and_compare(doc, json_out, markdown_out, plot, baseline, allowance, to_stdout)


def _write_and_compare(
    doc: dict[str, Any],
    json_out: Path | None,
    markdown_out: Path | None,
    plot: Path | None,
    baseline: dict[str, Any] | None,
    allowance: float,
    to_stdout: bool = False,
) -> None:
    """Write the reports asked for; with `to_stdout` the document is the only thing on stdout
    (with --compare, its comparison rows are in it, under "comparison")."""
    from edgekit.bench import compare as comparing
    from edgekit.bench import report

    if json_out is not None:
        report.write_json(doc, json_out)
    if markdown_out is not None:
        report.write_markdown(doc, markdown_out)
    if plot is not None:
        report.write_plot(doc, plot)
    rows = comparing.compare(doc, baseline, allowance) if baseline is not None else []
    if to_stdout:
        print_json({**doc, "comparison": rows} if baseline is not None else doc)
    elif baseline is not None:
        typer.echo("\n".join(comparing.lines(rows, allowance)))
    if any(r["regressed"] for r in rows):
        raise typer.Exit(1)


@app.command()
@user_errors
def choose(
    bundle: Annotated[Path, typer.Argument(help="a bundle directory")],
    threads: Annotated[
        int | None, typer.Option(help="intra-op threads (default: the runtime's)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the decision as JSON")] = False,
) -> None:
    """Measure again which CPU backend `device="auto"` runs this bundle on, and why."""
    from edgekit.bundle.directory import Bundle
    from edgekit.runtimes.choice import cpu_backend

    if threads is not None and threads < 1:
        fail(f"--threads must be >= 1, got {threads}", 2)
    manifest = Bundle.read(bundle, verify=True).manifest
    choice = cpu_backend(bundle, manifest, threads, measure=True)
    if as_json:
        print_json(choice)
        return
    typer.echo(f"auto on this CPU: {choice['backend']} ({choice['precision']} precision)")
    typer.echo(f"why: {choice['why']}")
