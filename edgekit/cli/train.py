"""`edgekit train` and `edgekit info`: checkpoints in, metadata out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.bundle.manifest import SCHEMA_VERSION, Variant
from edgekit.cli.app import app, fail, print_json, user_errors


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
        fail(f"unknown --cell {cell!r}; known cells: {', '.join(CELLS)}", 2)
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
        fail(f"--data not found: {data}", 2)
    ckpt, result = run_training(opts, out or Path(default_out), not (quiet or as_json), force)
    if as_json:
        print_json({"checkpoint": str(ckpt.path), "metrics": result.metrics, "data": result.data})
        return
    typer.echo(f"{model}: trained on {result.data.get('source')}")
    for name, value in result.metrics.items():
        what = "  (mean over the last epoch)" if name == "train_loss" else ""
        typer.echo(f"  {name:>20} = {value:.4g}{what}")
    typer.echo(f"checkpoint: {ckpt.path}")


@app.command()
@user_errors
def info(
    path: Annotated[
        Path, typer.Argument(help="a checkpoint or bundle directory, or an .onnx file")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the metadata as JSON")] = False,
) -> None:
    """Show a checkpoint's metadata, a bundle's manifest (verifying their hashes), or a plain ONNX
    file's inputs and outputs."""
    from edgekit.bundle.directory import MANIFEST, Bundle, read_manifest
    from edgekit.runtimes.plain_onnx import describe, is_plain_onnx
    from edgekit.training.checkpoint import load_checkpoint

    if is_plain_onnx(path):
        doc = describe(path)
        if as_json:
            print_json(doc)
            return
        typer.echo(f"onnx {path}  ({doc['bytes'] / 1024:.0f} KiB, from {doc['producer']})")
        for kind in ("inputs", "outputs"):
            for t in doc[kind]:
                typer.echo(f"  {kind[:-1]:<6} {t['name']:<14} {t['dtype']:<8} {t['shape']}")
        typer.echo(f"  run it: edgekit run {path} [--input X.npz]; time it: edgekit bench {path}")
        return

    if (path / MANIFEST).is_file():
        if _newer_bundle(path / MANIFEST, as_json):
            return
        if as_json:  # the document as stored
            print_json(read_manifest(path))
            return
        manifest = Bundle.read(path).manifest
        typer.echo(
            f"bundle {path}  (schema v{SCHEMA_VERSION}, task {manifest.task}, "
            f"model {manifest.model})"
        )
        contract = manifest.contract
        for kind, specs in (("inputs", contract.inputs), ("outputs", contract.outputs)):
            for t in specs:
                typer.echo(f"  {kind[:-1]:<6} {t.name:<14} {t.dtype:<8} {list(t.shape)}")
        for s in contract.state:
            shape = list(contract.spec(s.input).shape)
            grows = f", grows along {s.grows!r} up to {s.max_length}" if s.grows else ""
            grows += f" (when full: {s.when_full})" if s.grows else ""
            typer.echo(f"  state  {s.input} -> {s.output}  {shape}{grows}")
        for name in contract.context:
            typer.echo(f"  context {name} (one per stream, read by every step)")
        parity, exporter = manifest.parity, manifest.exporter
        if parity is not None and exporter is not None:
            typer.echo(
                f"  exporter {exporter.name} (opset {exporter.opset}); "
                f"parity {'passed' if parity.passed else 'FAILED'} at atol "
                f"{parity.tolerance.atol}, rtol {parity.tolerance.rtol}"
            )
        if contract.step_only:
            why = f" ({exporter.step_only_why})" if exporter and exporter.step_only_why else ""
            typer.echo(f"  step-only: one token per call, prompts fed by stepping{why}")
        for e in manifest.engines:
            typer.echo(f"  engine {e.file} ({e.gpu}, TensorRT {e.tensorrt})")
        step = manifest.step_graph
        if step:
            typer.echo(
                f"  step graph {step.file or '(none)'}: "
                + ("used for one-token steps" if step.used else "not used")
                + f" ({step.why})"
            )
        for v in manifest.variants:
            typer.echo("  " + variant_line(v))
        steps = [step.file] if step and step.used and step.file else []
        steps += [v.step_file for v in manifest.variants if v.step_file]
        if steps:
            typer.echo(threads_line(Path(path), steps))
        golden = manifest.golden
        if golden:
            rollout = golden.rollout_steps
            typer.echo(
                f"  golden {golden.file}: {len(golden.cases)} cases"
                + (f", a {rollout}-step greedy rollout" if rollout else "")
                + f" ({golden.bytes / 1024:.0f} KiB); replay with: edgekit check {path}"
            )
        typer.echo("  files  " + ", ".join(manifest.files))
        return

    ckpt = load_checkpoint(path)
    if as_json:
        print_json(ckpt.meta)
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


def _newer_bundle(manifest: Path, as_json: bool) -> bool:
    """A bundle of a newer format than this edgekit reads: show what it is and what it needs,
    rather than only refusing it (loading it is still refused)."""
    try:
        doc = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False  # the normal path reports it
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    if not isinstance(version, int) or version <= SCHEMA_VERSION:
        return False
    from edgekit.version import __version__

    writer = (doc.get("versions") or {}).get("edgekit")
    upgrade = f"pip install -U 'edgekit-ml>={writer}'" if writer else "pip install -U edgekit-ml"
    model = doc.get("model")
    model = model.get("name") if isinstance(model, dict) else model
    if as_json:
        print_json(doc)
        return True
    typer.echo(
        f"bundle {manifest.parent}  (schema v{version}, task {doc.get('task')}, model {model}), "
        f"written by edgekit {writer or '(version not recorded)'}\n"
        f"  this edgekit ({__version__}) reads schema v{SCHEMA_VERSION} and older: to load it, "
        f"{upgrade}"
    )
    return True


def variant_line(v: Variant) -> str:
    """One line per reduced-precision variant: file, recipe, size, speed and its task gate."""
    g, notes = v.measured, v.notes
    quality = g.quality or f"output error {float('nan'):.2%}"
    speed = g.speed.ratio if g.speed is not None else float("nan")
    size = notes.bytes_ratio if notes.bytes_ratio is not None else float("nan")
    gates = f"gates {'PASS' if g.passed else 'missed (forced)'}"
    if v.runtime:  # the fp32 graph, computed at another precision by one backend (bf16)
        return (
            f"variant {v.precision} {v.file} on {v.runtime} only: {speed:.2f}x its f32 latency "
            f"(batch 1), {quality} vs fp32; {gates}; use with --device {v.runtime} "
            f"--precision {v.precision}"
        )
    return (
        f"variant {v.precision} {v.file}"
        + (f" + {v.step_file} (steps)" if v.step_file else "")
        + f": {notes.recipe_mode}"
        + (" per-channel" if notes.recipe_per_channel and v.precision == "int8" else "")
        + f", {size:.2f}x size, {speed:.2f}x latency "
        + f"(batch 1), {quality} vs fp32; {gates}; "
        + f"use with --precision {v.precision}"
    )


def threads_line(bundle: Path, files: list[str]) -> str:
    """The threads each one-token graph steps on here, unless a count is given (step_threads)."""
    from edgekit.machine import l2_cache_bytes
    from edgekit.runtimes.threads import ONE_THREAD_STREAMS, step_threads

    l2 = l2_cache_bytes()
    where = (
        f"one core's L2 cache ({l2 / 2**20:.1f} MB)"
        if l2
        else "an L2 cache size this OS does not report"
    )
    parts = [
        f"{name} ({(bundle / name).stat().st_size / 2**20:.1f} MB): "
        + ("one thread" if step_threads(bundle / name) == 1 else "ONNX Runtime's default threads")
        for name in files
    ]
    return (
        f"  steps  against {where}: "
        + "; ".join(parts)
        + f" (one thread steps up to {ONE_THREAD_STREAMS} streams at once, more run on the "
        "default threads; --threads N sets every session)"
    )
