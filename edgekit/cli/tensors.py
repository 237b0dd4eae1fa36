"""`edgekit run`: any bundle, or a plain .onnx file, on named tensors in and out (as Polygraphy's
`run --load-inputs` / `--save-outputs`), whatever its task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from edgekit.cli.app import DeviceOption, PrecisionOption, app, fail, print_json, user_errors

SHOWN = 6  # values of each output shown on the terminal


@app.command("run")
@user_errors
def run_tensors(
    model: Annotated[Path, typer.Argument(help="a bundle directory, or a plain .onnx file")],
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help=".npz of arrays by input name (.npy for a one-input model); default: random "
            "inputs at the export's sizes",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="write the outputs to this .npz")
    ] = None,
    expect: Annotated[
        Path | None,
        typer.Option(
            help="an .npz of expected outputs (e.g. torch's): compare, exit 1 where they differ"
        ),
    ] = None,
    atol: Annotated[
        float | None, typer.Option(help="with --expect (default: the bundle's tolerance)")
    ] = None,
    rtol: Annotated[
        float | None, typer.Option(help="with --expect (default: the bundle's tolerance)")
    ] = None,
    device: DeviceOption = "cpu",
    precision: PrecisionOption = "fp32",
    seed: Annotated[int, typer.Option(help="seed of the random inputs")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="print inputs and outputs as one JSON document")
    ] = False,
) -> None:
    """Run any bundle (every task) or plain .onnx file on named tensors; print or save the outputs.
    A recurrent bundle's state inputs start at zero when the .npz leaves them out."""
    from edgekit.runtimes.plain_onnx import is_plain_onnx, open_onnx

    if output is not None and output.suffix != ".npz":
        fail(f"--output must name an .npz file, got {output}", 2)
    from edgekit.bundle.parts import Tolerance

    tolerance = Tolerance()
    if is_plain_onnx(model):
        if device != "cpu" or precision != "fp32":
            fail("a plain .onnx file runs on --device cpu at its own precision", 2)
        backend = open_onnx(model)
    else:
        from edgekit.runtimes.loader import load

        loaded = load(model, device=device, precision=precision)
        backend, tolerance = loaded.backend, loaded.manifest.tolerance
    expected = read_arrays(expect, "--expect") if expect is not None else None
    contract = backend.contract
    feeds = _read_inputs(input, contract) if input else _random(contract, seed)
    outputs = backend.run(feeds)
    if output is not None:  # whole or not at all
        import io

        from edgekit.files import atomic_write, check_writable

        check_writable(output)
        buffer = io.BytesIO()
        np.savez(buffer, **outputs)  # type: ignore[arg-type]
        atomic_write(output, buffer.getvalue())
    doc: dict[str, Any] = {
        "model": str(model),
        "device": backend.device,
        "inputs": {k: _tensor(v, data=False) for k, v in feeds.items()},
        "outputs": {k: _tensor(v, data=output is None) for k, v in outputs.items()},
        "written": None if output is None else str(output),
    }
    passed = True
    if expected is not None:
        from edgekit.parity import compare_outputs

        diffs = compare_outputs(
            expected,
            outputs,
            tolerance.atol if atol is None else atol,
            tolerance.rtol if rtol is None else rtol,
        )
        passed = all(d.passed for d in diffs)
        doc["comparison"] = {"passed": passed, "outputs": [vars(d) for d in diffs]}
    if as_json:
        print_json(doc)
        if not passed:
            raise typer.Exit(1)
        return
    for name, value in outputs.items():
        shown = ", ".join(f"{x:.6g}" for x in value.reshape(-1)[:SHOWN].tolist())
        more = ", ..." if value.size > SHOWN else ""
        typer.echo(f"{name:<16} {value.dtype!s:<8} {list(value.shape)}  [{shown}{more}]")
    if output is not None:
        typer.echo(f"outputs written to {output}")
    if expected is not None:
        for d in diffs:
            verdict = "ok" if d.passed else f"DIFFERS {d.detail}".strip()
            typer.echo(f"vs {expect}: {d.name:<16} max abs {d.max_abs:.3g}  max rel "
                       f"{d.max_rel:.3g}  {verdict}")  # fmt: skip
        if not passed:
            raise typer.Exit(1)


def read_arrays(path: Path, option: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz by name; a missing or unreadable file is one InputError naming
    `option`."""
    from edgekit.errors import InputError

    if not path.is_file():
        raise InputError(f"{option} not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in stored.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{option} {path} is not an .npz of arrays ({exc})") from None


def _read_inputs(path: Path, contract: Any) -> dict[str, np.ndarray]:
    from edgekit.errors import InputError

    names = contract.input_names
    state = {p.input for p in contract.state}
    if not path.is_file():
        raise InputError(f"--input not found: {path}")
    try:
        if path.suffix == ".npy":
            fed = [n for n in names if n not in state]
            if len(fed) != 1:
                raise InputError(
                    f"a .npy holds one array; this model takes {fed}: give an .npz keyed by name"
                )
            feeds = {fed[0]: np.load(path, allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as stored:
                feeds = {k: stored[k] for k in stored.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"--input {path} is not a .npz or .npy of arrays ({exc})") from None
    unknown = sorted(set(feeds) - set(names))
    missing = [n for n in names if n not in feeds and n not in state]
    if unknown or missing:
        raise InputError(
            f"--input {path}: "
            + "; ".join(
                part
                for part in (
                    f"unknown inputs {unknown}" if unknown else "",
                    f"missing inputs {missing}" if missing else "",
                )
                if part
            )
            + f"; the model takes {_described(contract)}"
        )
    left = [n for n in names if n not in feeds]
    if left:  # state inputs: zero state for the batch the other inputs have
        feeds.update({k: v for k, v in contract.zero_state(_batch(contract, feeds)).items()})
    return {n: feeds[n] for n in names}


def _batch(contract: Any, feeds: dict[str, np.ndarray]) -> int:
    axis = contract.role_axis("batch")
    for spec in contract.inputs:
        if spec.name in feeds and axis in spec.shape:
            return int(feeds[spec.name].shape[spec.shape.index(axis)])
    return 1


def _random(contract: Any, seed: int) -> dict[str, np.ndarray]:
    feeds = contract.feeds(contract.sizes(), np.random.default_rng(seed))
    if contract.state:  # a recurrent model starts from its zero state
        feeds.update(contract.zero_state(_batch(contract, feeds)))
    return feeds


def _described(contract: Any) -> str:
    return ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in contract.inputs)


def _tensor(value: np.ndarray, data: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"dtype": str(value.dtype), "shape": list(value.shape)}
    if data:
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            doc["nonfinite"] = int((~np.isfinite(value)).sum())  # JSON has no NaN: they are null
            value = np.where(np.isfinite(value), value, np.nan).astype(object)
            value[value != value] = None
        doc["data"] = value.tolist()
    return doc
