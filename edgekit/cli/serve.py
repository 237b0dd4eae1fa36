"""`edgekit serve`: serve bundles over HTTP (KServe v2, as Triton's clients speak it)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from edgekit.cli.app import DeviceOption, PrecisionOption, app, fail, user_errors


@app.command()
@user_errors
def serve(
    bundles: Annotated[
        list[str],
        typer.Argument(help="bundle directories, each PATH or NAME=PATH", metavar="BUNDLE"),
    ],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_batch: Annotated[int, typer.Option(help="rows one batched call may hold")] = 32,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            help="extra wait for requests to batch with (0: batch what queues while a call runs)"
        ),
    ] = 0.0,
    max_sequences: Annotated[
        int, typer.Option(help="recurrent models: live sequences at once (then 429)")
    ] = 256,
    sequence_timeout: Annotated[
        float,
        typer.Option(
            help="seconds after which an idle sequence is evicted, or a stream nobody reads dropped"
        ),
    ] = 60.0,
    device: DeviceOption = "cpu",
    threads: Annotated[int | None, typer.Option(help="intra-op threads per model")] = None,
    precision: PrecisionOption = "fp32",
    max_tokens: Annotated[int, typer.Option(help="tokens one generate request may ask for")] = 4096,
    max_prompt: Annotated[int, typer.Option(help="characters in one generate prompt")] = 16_384,
    max_generations: Annotated[
        int, typer.Option(help="generations running at once (then 429)")
    ] = 64,
    max_body_mb: Annotated[int, typer.Option(help="MiB in one request body (then 413)")] = 64,
    header_timeout: Annotated[
        float,
        typer.Option(
            help="seconds a request's line and headers may take (then the connection closes)"
        ),
    ] = 10.0,
    max_connections: Annotated[
        int, typer.Option(help="connections served at once (then 503)")
    ] = 1024,
    log_level: Annotated[
        str,
        typer.Option(help="warning, or info: also evictions, refusals (429) and clients that left"),
    ] = "warning",
    access_log: Annotated[
        bool, typer.Option(help="log every request (uvicorn's access log)")
    ] = False,
    generation_threads: Annotated[
        int | None,
        typer.Option(help="workers computing generations [default: half the cores]"),
    ] = None,
) -> None:
    """Serve bundles on the KServe v2 REST protocol: health, metadata, infer (batched; recurrent
    models keep state per sequence_id) and text generation with server-sent events."""
    from edgekit._optional import require

    uvicorn = require("uvicorn", "edgekit serve (pip install 'edgekit-ml[serve]')")
    from edgekit.serve.app import create_app
    from edgekit.serve.connections import server_settings
    from edgekit.serve.models import ServeOptions, parse_bundle_arg

    limits = {"max_tokens": max_tokens, "max_prompt": max_prompt, "max_body_mb": max_body_mb}
    if generation_threads is not None:
        limits["generation_threads"] = generation_threads
    options = ServeOptions(
        max_batch, max_wait_ms, max_sequences, sequence_timeout, device, threads, precision,
        max_generations=max_generations, header_timeout_s=header_timeout,
        max_connections=max_connections, **limits,
    )  # fmt: skip
    _check_address(host, port)
    if log_level not in ("warning", "info"):
        fail(f"--log-level must be warning or info, got {log_level!r}", 2)
    application = create_app([parse_bundle_arg(b) for b in bundles], options)
    served = [
        f"{name} ({m.manifest.precision or 'fp32'} on {m.model.device})"
        for name, m in application.state.models.items()
    ]
    typer.echo(f"serving {', '.join(served)} on http://{host}:{port}/v2")
    _log_at(log_level)
    settings = server_settings(options)  # head deadline, connection limit, a 5 s stop
    uvicorn.run(application, host=host, port=port, log_level="warning", **settings)


def _check_address(host: str, port: int) -> None:
    """Fail with one line, before loading anything, when the address cannot be listened on."""
    import socket

    from edgekit.errors import InputError

    if not 0 < port < 65536:
        raise InputError(f"--port must be 1..65535, got {port}")
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class _Lowercase(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"  # with any traceback


def _log_at(level: str) -> None:
    """The server's own log on stderr at `level`, each line prefixed with its level."""
    logger = logging.getLogger("edgekit.serve")
    handler = logging.StreamHandler()
    handler.setFormatter(_Lowercase("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(level.upper())
