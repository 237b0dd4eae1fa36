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
from typer.core import TyperGroup

try:  # typer vendors click from 0.2x on
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer, on click itself
    from click.exceptions import UsageError  # type: ignore[assignment]

from edgekit.errors import EdgekitError


class _Commands(TyperGroup):
    """The command group; `bench --json` with no file after it means stdout, as `--json` does on
    every other command (`bench --json FILE` still writes the document to FILE)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        self._asked_json = "--json" in args
        return super().parse_args(ctx, json_to_stdout(args))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # a usage error: still one JSON document
            if getattr(self, "_asked_json", False) and not getattr(exc, "json_printed", False):
                typer.echo(json.dumps({"error": exc.format_message(), "exit_code": 2}))
                exc.json_printed = True  # type: ignore[attr-defined]
            raise


def json_to_stdout(args: list[str]) -> list[str]:
    command = next((a for a in args if not a.startswith("-")), None)
    if command != "bench" or "--json" not in args:
        return args
    at = args.index("--json") + 1
    if at == len(args) or (args[at].startswith("-") and args[at] != "-"):
        return [*args[:at], "-", *args[at:]]
    return args


app = typer.Typer(
    cls=_Commands,
    name="edgekit",
    help="Train small PyTorch models, export verified ONNX bundles, run and benchmark them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts contain extras like edgekit-ml[gpu], not markup
)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> NoReturn:
    """Print `error: message` on stderr and exit with `code` (2 bad input, 1 check failed); with
    --json, stdout gets the error as the command's one JSON document: {"error", "exit_code"}."""
    typer.echo(f"error: {message}", err=True)
    if JSON_OUTPUT["on"]:
        typer.echo(json.dumps({"error": message, "exit_code": code}))
    raise typer.Exit(code)


JSON_OUTPUT = {"on": False}  # the running command was asked for --json on stdout


def wants_json(kwargs: dict[str, Any]) -> bool:
    """--json on stdout: the flag (as_json / json_out), or bench's `--json -`."""
    value = kwargs.get("as_json", kwargs.get("json_out"))
    return value is True or (isinstance(value, Path) and str(value) == "-")


def user_errors(fn: F) -> F:
    """Turn EdgekitError into one line on stderr and its exit code (2 bad input, 1 check failed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        JSON_OUTPUT["on"] = wants_json(kwargs)
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


def shows_stages(fn: F) -> F:
    """Long work (export, verify, quantize): each stage on stderr with the elapsed time, on a
    terminal only (EDGEKIT_PROGRESS=1 forces it, for logs)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from edgekit.progress import stages

        with stages(sys.stderr.isatty()):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _unexpected(exc: Exception) -> None:
    if DEBUG["on"]:
        raise exc
    text = " ".join(str(exc).split())[:400]
    fail(f"{type(exc).__name__}: {text} (rerun as edgekit --debug ... for the traceback)", 2)


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


DEBUG = {"on": False}  # --debug: let unexpected errors show their traceback


def _version(value: bool) -> None:
    if value:
        from edgekit.version import __version__

        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def _setup(
    debug: Annotated[
        bool, typer.Option("--debug", help="show tracebacks of unexpected errors")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print edgekit's version and exit"
        ),
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
    str, typer.Option(help="fp32 | int8 | fp16 | bf16 (variants from edgekit quantize) | auto")
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
        asked = "--json" in (argv if argv is not None else sys.argv[1:])
        if asked and not getattr(exc, "json_printed", False):  # still one JSON document
            typer.echo(json.dumps({"error": f"{message}{hint}", "exit_code": 2}))
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


def missing_extra_message(exc: ModuleNotFoundError) -> str:
    from edgekit._optional import extra_for

    top = (exc.name or "").split(".")[0]
    return f"this command needs '{top}', which is not installed: pip install 'edgekit-ml[{extra_for(top)}]'"
