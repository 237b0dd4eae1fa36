"""The `edgekit` command line: one thin function per command, heavy imports inside them.

Exit codes: 0 ok, 1 a check failed (parity, tolerance), 2 bad input. A user's mistake prints one line
on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from edgekit.errors import EdgekitError

app = typer.Typer(
    name="edgekit",
    help="Train small PyTorch models, export verified ONNX bundles, run and benchmark them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts contain extras like edgekit[gpu], not markup
)

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn: F) -> F:
    """Turn EdgekitError into one line on stderr and its exit code (2 bad input, 1 check failed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgekitError as exc:
            _fail(str(exc), exc.exit_code)
        except ModuleNotFoundError as exc:  # an optional extra is missing (e.g. torch on a device)
            from edgekit._optional import is_optional

            if not is_optional(exc.name):
                raise
            _fail(missing_extra_message(exc), 2)

    return wrapper  # type: ignore[return-value]


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@app.callback()
def _setup() -> None:
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)


@app.command()
@user_errors
def train(
    model: Annotated[
        str, typer.Argument(help="linear | logistic | cnn | lenet | rowlstm | charlm")
    ],
    data: Annotated[Path | None, typer.Option(help="data path (default: the built-in set)")] = None,
    epochs: Annotated[
        int | None, typer.Option(help="passes over the data (default per model)")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate (default per model)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch size (default per model)")] = None,
    seed: Annotated[int, typer.Option(help="the same seed gives the same weights")] = 0,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    out: Annotated[
        Path | None, typer.Option(help="checkpoint directory (default runs/MODEL)")
    ] = None,
    cell: Annotated[
        str, typer.Option(help="charlm: rnn|lstm|gru|scratch-rnn|scratch-lstm")
    ] = "lstm",
    layers: Annotated[int, typer.Option(help="charlm: recurrent layers")] = 2,
    hidden: Annotated[int, typer.Option(help="charlm: hidden units per layer")] = 256,
    embed: Annotated[int, typer.Option(help="charlm: embedding width; 0 = one-hot")] = 0,
    seq_len: Annotated[int, typer.Option(help="charlm: characters per training window")] = 35,
    max_chars: Annotated[
        int | None, typer.Option(help="charlm: use only the first N chars")
    ] = None,
    image_size: Annotated[int, typer.Option(help="cnn: input side in pixels")] = 128,
    samples: Annotated[int, typer.Option(help="cnn: synthetic images when no --data")] = 240,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    force: Annotated[
        bool, typer.Option(help="replace --out even if it is not a checkpoint")
    ] = False,
) -> None:
    """Train a zoo model and write a checkpoint (safetensors + JSON)."""
    from edgekit.models import get_model
    from edgekit.models.registry import CELLS
    from edgekit.training import TrainOptions
    from edgekit.training import train as run_training

    get_model(model)  # unknown names fail before torch is imported
    if model == "charlm" and cell not in CELLS:
        _fail(f"unknown --cell {cell!r}; known cells: {', '.join(CELLS)}", 2)
    default_out = f"runs/{model}-{cell}" if model == "charlm" else f"runs/{model}"
    opts = TrainOptions(
        model=model,
        data=data,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        device=device,
        cell=cell,
        layers=layers,
        hidden=hidden,
        embed=embed,
        seq_len=seq_len,
        max_chars=max_chars,
        image_size=image_size,
        samples=samples,
    )
    opts.validate()
    if data is not None and not data.exists():
        _fail(f"--data not found: {data}", 2)
    ckpt, result = run_training(opts, out or Path(default_out), not (quiet or as_json), force)
    if as_json:
        _print_json({"checkpoint": str(ckpt.path), "metrics": result.metrics, "data": result.data})
        return
    typer.echo(f"{model}: trained on {result.data.get('source')}")
    for name, value in result.metrics.items():
        typer.echo(f"  {name:>20} = {value:.4g}")
    typer.echo(f"checkpoint: {ckpt.path}")


@app.command()
@user_errors
def info(
    path: Annotated[Path, typer.Argument(help="a checkpoint or bundle directory")],
    as_json: Annotated[bool, typer.Option("--json", help="print the metadata as JSON")] = False,
) -> None:
    """Show a checkpoint's metadata or a bundle's manifest (verifying their hashes)."""
    from edgekit.manifest import MANIFEST, read_manifest
    from edgekit.training.checkpoint import load_checkpoint

    if (path / MANIFEST).is_file():
        manifest = read_manifest(path)
        if as_json:
            _print_json(manifest)
            return
        typer.echo(
            f"bundle {path}  (schema v{manifest['schema_version']}, task {manifest['task']}, "
            f"model {manifest['model']['name']})"
        )
        for kind in ("inputs", "outputs"):
            for t in manifest[kind]:
                typer.echo(f"  {kind[:-1]:<6} {t['name']:<14} {t['dtype']:<8} {t['shape']}")
        for s in manifest.get("state", []):
            typer.echo(f"  state  {s['input']} -> {s['output']}  {s['shape']}")
        parity = manifest["parity"]
        typer.echo(
            f"  exporter {manifest['exporter']['name']} (opset {manifest['exporter']['opset']}); "
            f"parity {'passed' if parity['passed'] else 'FAILED'} at atol {parity['atol']}, "
            f"rtol {parity['rtol']}"
        )
        for e in manifest.get("engines", []):
            typer.echo(f"  engine {e['file']} ({e['gpu']}, TensorRT {e['tensorrt']})")
        typer.echo("  files  " + ", ".join(manifest["files"]))
        return

    ckpt = load_checkpoint(path)
    if as_json:
        _print_json(ckpt.meta)
        return
    meta = ckpt.meta
    typer.echo(
        f"checkpoint {ckpt.path}  (format v{meta['format_version']}, sha256 {ckpt.sha256[:12]})"
    )
    typer.echo(f"  model   {meta['model']}  task {meta['task']}")
    typer.echo(f"  config  {json.dumps(meta['config'])}")
    if meta.get("labels"):
        typer.echo(f"  labels  {meta['labels']}")
    if meta.get("vocab"):
        typer.echo(f"  vocab   {len(meta['vocab'])} characters")
    typer.echo(f"  data    {meta['data'].get('source')}")
    typer.echo("  metrics " + ", ".join(f"{k}={v:.4g}" for k, v in meta["metrics"].items()))
    typer.echo(f"  created {meta['created']}  versions {meta['versions']}")


def _require_steps(steps: int) -> None:
    if steps < 1:
        _fail(f"--steps must be >= 1 (the rollout is part of the parity proof), got {steps}", 2)


class Exporter(str, Enum):
    auto = "auto"
    dynamo = "dynamo"
    torchscript = "torchscript"


@app.command()
@user_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint directory (from edgekit train)")],
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
    force: Annotated[bool, typer.Option(help="replace an existing --out")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest as JSON")] = False,
    tensorrt: Annotated[
        bool, typer.Option("--tensorrt", help="also build a TensorRT engine")
    ] = False,
    fp16: Annotated[bool, typer.Option(help="TensorRT: allow FP16 kernels")] = False,
    max_batch: Annotated[int, typer.Option(help="TensorRT: largest batch in the profile")] = 32,
    max_seq: Annotated[int, typer.Option(help="TensorRT: longest time axis in the profile")] = 512,
) -> None:
    """Export a checkpoint to an ONNX bundle, proving parity with PyTorch first."""
    _require_steps(steps)
    from edgekit.exporters import bundle_from_checkpoint

    if tensorrt:  # fail before the export, not after it
        from edgekit._optional import require
        from edgekit.runtimes.cuda import cudart

        require("tensorrt", "--tensorrt")
        cudart()

    target = out or Path("bundles") / checkpoint.resolve().name
    path, manifest = bundle_from_checkpoint(
        checkpoint, target, exporter.value, opset, atol, rtol, force, steps
    )
    if as_json:
        _print_json(manifest)
        return
    from edgekit.parity import ParityReport

    typer.echo(_report_table(manifest["parity"], ParityReport))
    if manifest["parity"].get("real_data_note"):
        typer.echo(f"note: {manifest['parity']['real_data_note']}")
    typer.echo(f"exporter: {manifest['exporter']['name']} (opset {manifest['exporter']['opset']})")
    typer.echo(f"bundle: {path}")
    if tensorrt:
        _build_engine(path, fp16, max_batch, max_seq, force=True)


def _build_engine(bundle: Path, fp16: bool, max_batch: int, max_seq: int, force: bool) -> None:
    from edgekit.exporters.tensorrt import build_engine_into_bundle

    record = build_engine_into_bundle(bundle, fp16, max_batch, max_seq, force)
    typer.echo(
        f"engine: {bundle / record['file']} ({record['gpu']}, sm {record['compute_capability']}, "
        f"TensorRT {record['tensorrt']}, max abs diff vs ORT {record['parity']['max_abs']:.3g})"
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
    """Build a TensorRT engine for this machine's GPU into a bundle (needs edgekit[gpu])."""
    from edgekit._optional import require
    from edgekit.manifest import read_manifest

    read_manifest(bundle)  # a bad bundle fails before TensorRT is looked for
    from edgekit.runtimes.cuda import cudart

    require("tensorrt", "edgekit engine")
    cudart()
    _build_engine(bundle, fp16, max_batch, max_seq, force)


def _report_table(parity: dict[str, Any], report_cls: Any) -> str:
    from edgekit.parity import CaseResult, OutputDiff, RolloutResult

    report = report_cls(parity["reference"], parity["candidate"], parity["atol"], parity["rtol"])
    for c in parity["cases"]:
        outs = [OutputDiff(**o) for o in c["outputs"]]
        report.cases.append(CaseResult(c["case"], outs, c["error"]))
    if parity.get("rollout"):
        report.rollout = RolloutResult(**parity["rollout"])
    return report.table()


@app.command()
@user_errors
def verify(
    bundle: Annotated[Path, typer.Argument(help="a bundle directory (from edgekit export)")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="source checkpoint (default: manifest)")
    ] = None,
    steps: Annotated[
        int, typer.Option(help="recurrent models: greedy rollout steps checked")
    ] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Re-run the parity checks of a bundle against its source checkpoint; exit 0 or 1."""
    _require_steps(steps)
    from edgekit.exporters.bundle import verify_bundle

    report = verify_bundle(bundle, checkpoint, steps)
    if as_json:
        _print_json(report.to_dict())
    else:
        typer.echo(report.table())
        typer.echo(f"verify: {'PASS' if report.passed else 'FAIL'} ({bundle})")
    if not report.passed:
        raise typer.Exit(1)


def _load(bundle: Path, device: str) -> Any:
    import edgekit

    model = edgekit.load(bundle, device=device)
    if device == "auto":
        typer.echo(f"device: {model.device} (auto)", err=True)
    return model


DeviceOption = Annotated[str, typer.Option(help="cpu | cuda | tensorrt | auto")]


@app.command()
@user_errors
def classify(
    bundle: Annotated[Path, typer.Argument(help="a classification bundle")],
    images: Annotated[list[Path], typer.Argument(help="image files")],
    top_k: Annotated[int, typer.Option(help="labels to show per image")] = 1,
    device: DeviceOption = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Classify image files with a bundle (torch-free)."""

    model = _load(bundle, device)
    if model.task != "classify" or not model.manifest.get("preprocess"):
        _fail(
            f"{bundle} is a {model.task} bundle without image preprocessing; classify needs an "
            "image classifier",
            2,
        )
    for path in images:
        if path.is_dir():
            _fail(f"{path} is a directory; pass image files (e.g. {path}/*.jpg)", 2)
        if not path.is_file():
            _fail(f"image not found: {path}", 2)
    predictions = model.predict([str(p) for p in images], top_k=top_k)
    if as_json:
        _print_json(
            [
                {"image": str(p), "label": r.label, "score": r.score, "top_k": r.top_k}
                for p, r in zip(images, predictions, strict=True)
            ]
        )
        return
    for path, r in zip(images, predictions, strict=True):
        ranked = ", ".join(f"{label} {score:.3f}" for label, score in r.top_k)
        typer.echo(f"{path}: {ranked}")


@app.command()
@user_errors
def predict(
    bundle: Annotated[Path, typer.Argument(help="a regression or tabular classification bundle")],
    rows: Annotated[list[str] | None, typer.Argument(help="feature rows, e.g. 25,3 30,2")] = None,
    csv: Annotated[
        Path | None, typer.Option(help="a CSV of feature rows (header row first)")
    ] = None,
    device: DeviceOption = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Predict from feature rows with a tabular bundle (torch-free)."""
    import numpy as np

    model = _load(bundle, device)
    if model.task not in ("regress", "classify") or model.manifest.get("preprocess"):
        _fail(f"{bundle} is not a tabular bundle; predict takes feature rows", 2)
    width = model.backend.contract.inputs[0].shape[1]
    data = _read_rows(rows or [], csv, width)
    if model.task == "regress":
        values = [float(v) for v in model.predict(np.asarray(data, np.float32))]
        results: list[Any] = [
            {"row": r, "prediction": v} for r, v in zip(data, values, strict=True)
        ]
    else:
        preds = model.predict(np.asarray(data, np.float32))
        results = [
            {"row": r, "label": p.label, "score": p.score} for r, p in zip(data, preds, strict=True)
        ]
    if as_json:
        _print_json(results)
        return
    for r in results:
        shown = r.get("prediction", None)
        value = f"{shown:.4g}" if shown is not None else f"{r['label']} ({r['score']:.3f})"
        typer.echo(f"{','.join(f'{v:g}' for v in r['row'])} -> {value}")


def _read_rows(rows: list[str], csv_path: Path | None, width: Any) -> list[list[float]]:
    import csv
    import math

    texts = [r.split(",") for r in rows]
    if csv_path is not None:
        if not csv_path.is_file():
            _fail(f"--csv not found: {csv_path}", 2)
        with csv_path.open(newline="") as f:
            texts += [r for r in list(csv.reader(f))[1:] if r]
    if not texts:
        _fail("no rows given: pass rows like 25,3 or --csv FILE", 2)
    data = []
    for cells in texts:
        try:
            row = [float(c) for c in cells]
        except ValueError:
            _fail(f"row {','.join(cells)!r} is not numbers separated by commas", 2)
        if not all(math.isfinite(v) for v in row):
            _fail(f"row {','.join(cells)!r} has a non-finite value (nan or inf)", 2)
        if isinstance(width, int) and len(row) != width:
            _fail(f"row {','.join(cells)!r} has {len(row)} values; the model expects {width}", 2)
        data.append(row)
    return data


@app.command()
@user_errors
def generate(
    bundle: Annotated[Path, typer.Argument(help="a generation bundle (charlm)")],
    prompt: Annotated[str, typer.Option(help="text to continue")] = "the ",
    max_new_tokens: Annotated[int, typer.Option(help="characters to generate")] = 200,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 1.0,
    top_k: Annotated[int | None, typer.Option(help="sample from the k most likely")] = None,
    top_p: Annotated[float | None, typer.Option(help="nucleus sampling mass")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for reproducible sampling")] = None,
    stream: Annotated[bool, typer.Option(help="print characters as they are produced")] = False,
    device: DeviceOption = "cpu",
) -> None:
    """Generate text with a recurrent bundle (torch-free)."""

    model = _load(bundle, device)
    if model.task != "generate":
        _fail(f"{bundle} is a {model.task} bundle; generate needs a generation bundle", 2)
    args = (prompt, max_new_tokens, temperature, top_k, top_p, seed)
    if stream:
        typer.echo(prompt, nl=False)
        for ch in model.stream(*args):
            typer.echo(ch, nl=False)
        typer.echo()
    else:
        typer.echo(prompt + model.generate(*args))


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        _fail(f"{flag} must be comma-separated positive integers, got {text!r}", 2)
    return values


@app.command()
@user_errors
def bench(
    bundle: Annotated[Path, typer.Argument(help="a bundle directory")],
    backends: Annotated[
        str | None,
        typer.Option(
            help="comma-separated: torch,ort-cpu,ort-cuda,ort-trt,trt (default: all available)"
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
    threads: Annotated[
        int | None, typer.Option(help="intra-op threads (default: the runtime's)")
    ] = None,
    cold_start: Annotated[
        bool, typer.Option(help="measure cold start and peak RSS per backend")
    ] = True,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the result document here")
    ] = None,
    markdown_out: Annotated[
        Path | None, typer.Option("--markdown", help="write a markdown report")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="write a PNG of the latency distributions")
    ] = None,
) -> None:
    """Latency percentiles of every backend on one bundle, side by side with PyTorch."""
    from edgekit.bench import report
    from edgekit.bench.cases import parse_backends
    from edgekit.bench.core import run_bench
    from edgekit.bench.runner import Budget

    if warmup is not None and warmup_s is not None:
        _fail("give --warmup or --warmup-s, not both", 2)
    if iters is not None and duration is not None:
        _fail("give --iters or --duration, not both", 2)
    if rounds < 1:
        _fail(f"--rounds must be >= 1, got {rounds}", 2)
    for path, flag in ((json_out, "--json"), (markdown_out, "--markdown"), (plot, "--plot")):
        report.check_output_path(path, flag)
    if plot is not None:
        from edgekit._optional import require

        require("matplotlib", "--plot")
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

    prog = _Progress()
    try:
        doc = run_bench(
            bundle,
            parse_backends(backends),
            _int_list(batch, "--batch"),
            budget,
            threads,
            cold_start,
            prog,
        )
    finally:
        if prog.ctx is not None:
            prog.ctx.__exit__(None, None, None)
    report.print_report(doc)
    if json_out is not None:
        report.write_json(doc, json_out)
    if markdown_out is not None:
        report.write_text_atomic(markdown_out, report.markdown(doc))
    if plot is not None:
        report.write_plot(doc, plot)


def main(argv: list[str] | None = None) -> None:
    """The console script: usage errors become one line on stderr (exit 2), never a usage box."""
    try:
        code = app(argv, standalone_mode=False)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `edgekit`: show the help
            typer.echo(exc.format_message(), err=True)
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {message}{hint}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


def missing_extra_message(exc: ModuleNotFoundError) -> str:
    from edgekit._optional import extra_for

    top = (exc.name or "").split(".")[0]
    return f"this command needs '{top}', which is not installed: pip install 'edgekit[{extra_for(top)}]'"
