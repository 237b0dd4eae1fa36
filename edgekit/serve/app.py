"""The HTTP server: KServe v2 endpoints (Triton's flavour) over the served bundles, on Starlette.

    GET  /v2/health/live | /v2/health/ready | /v2
    GET  /v2/models/{name}[/versions/1]            metadata from the manifest
    GET  /v2/models/{name}[/versions/1]/ready
    GET  /v2/models/{name}[/versions/1]/config     the model configuration, as Triton's JSON
    POST /v2/models/{name}[/versions/1]/infer      JSON or binary tensors; sequence parameters;
                                                   the classification extension
    GET  /v2/models[/{name}]/stats                 Triton's statistics (+ batching and sequences)
    POST /v2/models/{name}/generate[_stream]       text in, text out (server-sent events)

Every failure, on every route, is a JSON `{"error": "..."}` with its status: 400 for a bad request
(a batch over --max-batch included), 404 for an unknown model or route, 405 for a wrong method,
413 for a body over the limit, 429 when no sequence slot is free, 500 for a failure inside a
model; none of them stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgekit._optional import require
from edgekit.errors import InputError
from edgekit.serve.generate import generate_events, generate_once
from edgekit.serve.models import ServedModel, ServeOptions
from edgekit.serve.protocol import HEADER_LENGTH, encode_response, parse_request
from edgekit.serve.sequences import SequencesFull

MAX_BODY = 256 << 20  # bytes
log = logging.getLogger("edgekit.serve")


class UnknownModel(Exception):
    pass


class BodyTooLarge(Exception):
    """A request body over MAX_BODY (HTTP 413), declared or found while reading it."""


def _starlette() -> Any:
    return require("starlette", "edgekit serve (pip install 'edgekit-ml[serve]')")


def create_app(bundles: list[tuple[str, Path]], options: ServeOptions | None = None) -> Any:
    """A Starlette app serving `bundles` ((name, path) pairs)."""
    _starlette()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    options = options or ServeOptions()
    options.check()
    names = [n for n, _ in bundles]
    if len(set(names)) != len(names):
        raise InputError(f"two bundles share a model name: {names}; name them with NAME=PATH")
    executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="edgekit-serve")
    models = {name: ServedModel(name, path, options, executor) for name, path in bundles}

    def model_of(request: Request) -> ServedModel:
        name, version = request.path_params["name"], request.path_params.get("version", "1")
        if name not in models or version != "1":
            raise UnknownModel(
                f"unknown model {name!r} version {version!r}; serving {names} (version 1)"
            )
        return models[name]

    def handled(fn: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Any]]:
        async def endpoint(request: Request) -> Any:
            try:
                return await fn(request)
            except InputError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            except UnknownModel as exc:
                return JSONResponse({"error": str(exc)}, 404)
            except BodyTooLarge as exc:
                return JSONResponse({"error": str(exc)}, 413)
            except SequencesFull as exc:
                return JSONResponse({"error": str(exc)}, 429)
            except Exception:  # a failure inside one model never stops the server
                # the server's own bug: the log has the exception, the client a plain line
                log.exception("internal error serving %s", request.url.path)
                return JSONResponse({"error": "internal error; the server log has the cause"}, 500)

        return endpoint

    async def body_of(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            raise BodyTooLarge(f"the body is {declared} bytes, more than {MAX_BODY}")
        chunks, size = [], 0
        async for chunk in request.stream():  # counted while read: a chunked body has no length
            size += len(chunk)
            if size > MAX_BODY:
                raise BodyTooLarge(f"the body is more than {MAX_BODY} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        if request.headers.get("content-encoding") in ("gzip", "deflate"):
            raise InputError("compressed request bodies are not supported; send them plain")
        return body

    async def live(request: Request) -> Any:
        return Response(status_code=200)

    async def server_metadata(request: Request) -> Any:
        from edgekit.version import __version__

        extensions = ["classification", "model_configuration", "binary_tensor_data",
                      "sequence", "statistics", "generate"]  # fmt: skip
        return JSONResponse({"name": "edgekit", "version": __version__, "extensions": extensions})

    async def metadata(request: Request) -> Any:
        return JSONResponse(model_of(request).metadata())

    async def ready(request: Request) -> Any:
        model_of(request)
        return Response(status_code=200)

    async def config(request: Request) -> Any:
        return JSONResponse(model_of(request).config())

    async def infer(request: Request) -> Any:
        model = model_of(request)
        parsed = parse_request(await body_of(request), request.headers.get(HEADER_LENGTH))
        outputs = await model.infer(parsed.inputs, parsed.parameters)
        if parsed.classification:
            outputs = model.classified(outputs, parsed.classification)
        body, headers = encode_response(model.name, parsed, outputs)
        media = "application/octet-stream" if headers else "application/json"
        return Response(body, 200, headers=headers, media_type=media)

    async def stats(request: Request) -> Any:
        chosen = [model_of(request)] if "name" in request.path_params else list(models.values())
        return JSONResponse({"model_stats": [m.stats() for m in chosen]})

    async def generate(request: Request) -> Any:
        model = model_of(request)
        return JSONResponse(await generate_once(model, await body_of(request), executor))

    async def generate_stream(request: Request) -> Any:
        model = model_of(request)
        events = generate_events(model, await body_of(request))
        first = await anext(events)  # a bad request fails here, before the stream starts

        async def stream() -> AsyncIterator[bytes]:
            yield first
            async for event in events:
                yield event

        return StreamingResponse(stream(), media_type="text/event-stream")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async def evict() -> None:  # sequences of clients that went away
            period = min(1.0, options.sequence_timeout_s / 4)
            while True:
                await asyncio.sleep(period)
                for m in models.values():
                    if m.sequences is not None:
                        m.sequences.evict_idle()

        task = asyncio.get_running_loop().create_task(evict())
        try:
            yield
        finally:
            task.cancel()
            executor.shutdown(wait=False, cancel_futures=True)

    model_path = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    routes = [
        Route("/v2/health/live", handled(live)),
        Route("/v2/health/ready", handled(live)),
        Route("/v2", handled(server_metadata)),
        Route("/v2/models/stats", handled(stats)),
    ]
    for base in (versioned, model_path):
        routes += [
            Route(base, handled(metadata)),
            Route(f"{base}/ready", handled(ready)),
            Route(f"{base}/config", handled(config)),
            Route(f"{base}/infer", handled(infer), methods=["POST"]),
            Route(f"{base}/stats", handled(stats)),
            Route(f"{base}/generate", handled(generate), methods=["POST"]),
            Route(f"{base}/generate_stream", handled(generate_stream), methods=["POST"]),
        ]

    async def http_error(request: Request, exc: Any) -> Any:
        """Starlette's own 404 (no such route) and 405 (wrong method), as JSON like the rest."""
        what = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed here"}
        return JSONResponse({"error": what.get(exc.status_code, str(exc.detail))}, exc.status_code)

    from starlette.exceptions import HTTPException

    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.state.models = models
    return app
