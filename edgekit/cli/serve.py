"""`edgekit serve`: serve bundles over HTTP (KServe v2, as Triton's clients speak it)."""

from __future__ import annotations

from typing import Annotated

import typer

from edgekit.cli.app import DeviceOption, PrecisionOption, app, user_errors


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
    generation_threads: Annotated[
        int | None,
        typer.Option(help="workers computing generations [default: half the cores]"),
    ] = None,
) -> None:
    """Serve bundles on the KServe v2 REST protocol: health, metadata, infer (batched; recurrent
    models keep state per sequence_id) and text generation with server-sent events."""
    from edgekit._optional import require
    from edgekit.serve.app import create_app
    from edgekit.serve.models import ServeOptions, parse_bundle_arg

    uvicorn = require("uvicorn", "edgekit serve (pip install 'edgekit-ml[serve]')")
    limits = {"max_tokens": max_tokens, "max_prompt": max_prompt, "max_body_mb": max_body_mb}
    if generation_threads is not None:
        limits["generation_threads"] = generation_threads
    options = ServeOptions(
        max_batch, max_wait_ms, max_sequences, sequence_timeout, device, threads, precision,
        max_generations=max_generations, **limits,
    )  # fmt: skip
    _check_address(host, port)
    application = create_app([parse_bundle_arg(b) for b in bundles], options)
    typer.echo(f"serving {', '.join(application.state.models)} on http://{host}:{port}/v2")
    # open streams and slow clients do not hold a stopping server for more than 5 s
    uvicorn.run(application, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


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
