"""`edgekit classify`, `predict` and `generate`: run a bundle (torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgekit.cli.app import (
    DeviceOption,
    PrecisionOption,
    app,
    fail,
    load_bundle,
    print_json,
    user_errors,
)
from edgekit.errors import InputError


@app.command()
@user_errors
def classify(
    bundle: Annotated[Path, typer.Argument(help="a classification bundle")],
    images: Annotated[list[Path] | None, typer.Argument(help="image files")] = None,
    text: Annotated[
        list[str] | None,
        typer.Option("--text", help="text to classify (token-input bundles; repeat for several)"),
    ] = None,
    top_k: Annotated[int, typer.Option(help="labels to show per input")] = 1,
    device: DeviceOption = "cpu",
    precision: PrecisionOption = "fp32",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Classify image files, or text with --text, with a bundle (torch-free). An unreadable file
    gets its own error line, the rest are still classified, and the exit code is then 2."""
    import numpy as np

    model = load_bundle(bundle, device, precision)
    if model.task != "classify":
        fail(
            f"{bundle} is a {model.task} bundle; classify needs an image classifier (or a text "
            f"classifier, with --text); run any bundle on tensors: edgekit run {bundle} --input "
            "X.npz",
            2,
        )
    if text is not None or getattr(model, "text", None) is not None:
        _classify_text(model, bundle, text, images, top_k, as_json)
        return
    if not model.manifest.preprocess:
        fail(
            f"{bundle} is a {model.task} bundle without image preprocessing; classify needs an "
            f"image classifier; run it on tensors: edgekit run {bundle} --input X.npz",
            2,
        )
    if not images:
        fail("no images given: pass image files (or --text for a text classifier)", 2)
    # Each unreadable file gets its own error line; the readable ones are still classified.
    readable, batches, unreadable = [], [], 0
    for path in images:
        problem = None
        if path.is_dir():
            problem = f"{path} is a directory; pass image files (e.g. {path}/*.jpg)"
        elif not path.is_file():
            problem = f"image not found: {path}"
        else:
            try:
                batches.append(model.prepare(str(path)))  # (1, C, H, W)
                readable.append(path)
            except InputError as exc:
                problem = f"{path}: {exc}"
        if problem is not None:
            typer.echo(f"error: {problem}", err=True)
            unreadable += 1
    predictions = model.predict(np.concatenate(batches), top_k=top_k) if batches else []
    if as_json:
        print_json(
            [
                {"image": str(p), "label": r.label, "score": r.score, "top_k": r.top_k}
                for p, r in zip(readable, predictions, strict=True)
            ]
        )
    else:
        for path, r in zip(readable, predictions, strict=True):
            ranked = ", ".join(f"{label} {score:.3f}" for label, score in r.top_k)
            typer.echo(f"{path}: {ranked}")
    if unreadable:
        raise typer.Exit(2)


def _classify_text(
    model: Any,
    bundle: Path,
    texts: list[str] | None,
    images: list[Path] | None,
    top_k: int,
    as_json: bool,
) -> None:
    if getattr(model, "text", None) is None:
        fail(f"{bundle} classifies images, not text; pass image files", 2)
    if images or not texts:
        fail(f"{bundle} classifies text: pass --text TEXT (not files)", 2)
    predictions = model.predict(texts, top_k=top_k)
    if as_json:
        print_json(
            [
                {"text": t, "label": r.label, "score": r.score, "top_k": r.top_k}
                for t, r in zip(texts, predictions, strict=True)
            ]
        )
        return
    for t, r in zip(texts, predictions, strict=True):
        ranked = ", ".join(f"{label} {score:.3f}" for label, score in r.top_k)
        typer.echo(f"{t}: {ranked}")


@app.command()
@user_errors
def predict(
    bundle: Annotated[Path, typer.Argument(help="a regression or tabular classification bundle")],
    rows: Annotated[list[str] | None, typer.Argument(help="feature rows, e.g. 25,3 30,2")] = None,
    csv: Annotated[
        Path | None, typer.Option(help="a CSV of feature rows (header row first)")
    ] = None,
    device: DeviceOption = "cpu",
    precision: PrecisionOption = "fp32",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Predict from feature rows with a tabular bundle (torch-free)."""
    import numpy as np

    model = load_bundle(bundle, device, precision)
    if model.task not in ("regress", "classify") or model.manifest.preprocess:
        fail(f"{bundle} is not a tabular bundle; predict takes feature rows", 2)
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
        print_json(results)
        return
    for r in results:
        shown = r.get("prediction", None)
        value = f"{shown:.4g}" if shown is not None else f"{r['label']} ({r['score']:.3f})"
        typer.echo(f"{','.join(f'{v:g}' for v in r['row'])} -> {value}")


FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32


def _read_rows(rows: list[str], csv_path: Path | None, width: Any) -> list[list[float]]:
    import csv
    import math

    texts = [r.split(",") for r in rows]
    if csv_path is not None:
        if not csv_path.is_file():
            fail(f"--csv not found: {csv_path}", 2)
        try:
            with csv_path.open(newline="", encoding="utf-8") as f:
                texts += [r for r in list(csv.reader(f))[1:] if r]
        except (UnicodeDecodeError, csv.Error) as exc:
            fail(f"--csv {csv_path} is not a text CSV file ({exc.__class__.__name__})", 2)
    if not texts:
        fail("no rows given: pass rows like 25,3 or --csv FILE", 2)
    data = []
    for cells in texts:
        try:
            row = [float(c) for c in cells]
        except ValueError:
            fail(f"row {','.join(cells)!r} is not numbers separated by commas", 2)
        # finite after the cast to the model's float32: 1e39 is finite in Python, inf in float32
        if not all(math.isfinite(v) and abs(v) <= FLOAT32_MAX for v in row):
            fail(
                f"row {','.join(cells)!r} has a non-finite value in float32 "
                f"(nan, inf, or beyond +-{FLOAT32_MAX:.4g})",
                2,
            )
        if isinstance(width, int) and len(row) != width:
            fail(f"row {','.join(cells)!r} has {len(row)} values; the model expects {width}", 2)
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
    precision: PrecisionOption = "fp32",
    as_json: Annotated[
        bool,
        typer.Option("--json", help="print {prompt, text, ...} as JSON once done (not streamed)"),
    ] = False,
    context: Annotated[
        Path | None,
        typer.Option(
            help="an .npz of the stream's context inputs by name (a bundle exported with "
            "context=[...], e.g. a decoder's encoder outputs)",
            metavar="FILE.npz",
        ),
    ] = None,
) -> None:
    """Generate text with a recurrent bundle (torch-free): prints the prompt, then the continuation."""
    from edgekit.cli.tensors import read_arrays
    from edgekit.runtimes.decode import Generation, Sampling

    model = load_bundle(bundle, device, precision)
    if model.task != "generate":
        fail(f"{bundle} is a {model.task} bundle; generate needs a generation bundle", 2)
    options = Generation(max_new_tokens, Sampling(temperature, top_k, top_p), seed)
    given = read_arrays(context, "--context") if context is not None else None
    if as_json:
        text = model.generate(prompt, options=options, context=given)
        asked = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k,
                 "top_p": top_p, "seed": seed}  # fmt: skip
        print_json(
            {"bundle": str(bundle), "device": model.device, "prompt": prompt, "text": text, **asked}
        )
        return
    if stream:
        typer.echo(prompt, nl=False)
        for ch in model.stream(prompt, options=options, context=given):
            typer.echo(ch, nl=False)
        typer.echo()
    else:
        typer.echo(prompt + model.generate(prompt, options=options, context=given))
