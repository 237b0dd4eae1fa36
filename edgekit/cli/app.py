"""The Typer app every command module registers on, and what they share: one-line errors with
exit codes, JSON output, loading a bundle for a command, the device option.

Exit codes: 0 ok, 1 a check failed (parity, tolerance), 2 bad input. A user's mistake prints one line
on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from edgekit.errors import EdgekitError

app = typer.Typer(
    name="edgekit",
    help="Train small PyTorch models, export verified ONNX bundles, run and benchmark them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts contain extras like edgekit-ml[gpu], not markup
)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> NoReturn:
    """Print `error: message` on stderr and exit with `code` (2 bad input, 1 check failed)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn: F) -> F:
    """Turn EdgekitError into one line on stderr and its exit code (2 bad input, 1 check failed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgekitError as exc:
            fail(str(exc), exc.exit_code)
        except ModuleNotFoundError as exc:  # an optional extra is missing (e.g. torch on a device)
            from edgekit._optional import is_optional

            if not is_optional(exc.name):
                raise
            fail(missing_extra_message(exc), 2)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # never a traceback for the user; --debug shows it
            if DEBUG["on"]:
                raise
            text = " ".join(str(exc).split())[:400]
            fail(
                f"{type(exc).__name__}: {text} (rerun as edgekit --debug ... for the traceback)", 2
            )

    return wrapper  # type: ignore[return-value]


def _unexpected(exc: Exception) -> None:
    if DEBUG["on"]:
        raise exc
    text = " ".join(str(exc).split())[:400]
    fail(f"{type(exc).__name__}: {text} (rerun as edgekit --debug ... for the traceback)", 2)


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


DEBUG = {"on": False}  # --debug: let unexpected errors show their traceback


@app.callback()
def _setup(
    debug: Annotated[
        bool, typer.Option("--debug", help="show tracebacks of unexpected errors")
    ] = False,
) -> None:
    DEBUG["on"] = debug
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)


def load_bundle(bundle: Path, device: str, precision: str = "fp32") -> Any:
    """The runtime's load for a command; with device auto, say on stderr which device was chosen."""
    from edgekit.runtimes.loader import load

    model = load(bundle, device=device, precision=precision)
    if device == "auto":
        typer.echo(f"device: {model.device} (auto)", err=True)
    return model


DeviceOption = Annotated[str, typer.Option(help="cpu | cuda | tensorrt | openvino | auto")]
PrecisionOption = Annotated[
    str, typer.Option(help="fp32 | int8 | fp16 (variants from edgekit quantize) | auto")
]


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
    return f"this command needs '{top}', which is not installed: pip install 'edgekit-ml[{extra_for(top)}]'"
