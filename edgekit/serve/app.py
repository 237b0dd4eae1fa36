"""The HTTP server: KServe v2 endpoints (Triton's flavour) over the served bundles, on Starlette.

    GET  /v2/health/live | /v2/health/ready | /v2
    GET  /v2/models/{name}[/versions/1]            metadata from the manifest
    GET  /v2/models/{name}[/versions/1]/ready
    GET  /v2/models/{name}[/versions/1]/config     the model configuration, as Triton's JSON
    POST /v2/models/{name}[/versions/1]/infer      JSON or binary tensors; sequence parameters;
                                                   the classification extension
    GET  /v2/models[/{name}]/stats                 Triton's statistics (+ batching, sequences and
                                                   the server's generations)
    POST /v2/models/{name}/generate[_stream]       text in, text out (server-sent events)

Every failure, on every route, is a JSON `{"error": "..."}` with its status: 400 for a bad request
(a batch over --max-batch included), 404 for an unknown model or route, 405 for a wrong method,
413 for a body over the limit, 429 when no sequence or generation slot is free, 500 for a failure
inside a model; none of them stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgekit._optional import require
from edgekit.errors import InputError
from edgekit.serve.bodies import MAX_BODY, BodyBudget, BodyRefused, ClientGone, read_body
from edgekit.serve.generate import generate_events, generate_once, send_within
from edgekit.serve.generations import Generations, GenerationsFull
from edgekit.serve.models import ServedModel, ServeOptions
from edgekit.serve.protocol import HEADER_LENGTH, encode_response, parse_request
from edgekit.serve.sequences import SequencesFull

log = logging.getLogger("edgekit.serve")


class UnknownModel(Exception):
    pass


def _starlette() -> Any:
    return require("starlette", "edgekit serve (pip install 'edgekit-ml[serve]')")


def create_app(bundles: list[tuple[str, Path]], options: ServeOptions | None = None) -> Any:
    """A Starlette app serving `bundles` ((name, path) pairs)."""
    _starlette()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    limits: ServeOptions = options or ServeOptions()
    limits.check()
    names = [n for n, _ in bundles]
    if len(set(names)) != len(names):
        raise InputError(f"two bundles share a model name: {names}; name them with NAME=PATH")
    executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="edgekit-serve")
    generations = Generations(limits.max_generations, limits.generation_threads)
    models = {name: ServedModel(name, path, limits, executor) for name, path in bundles}

    budget = BodyBudget()

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
                with budget.holding() as take:  # its body counts until the answer is ready
                    request.state.take = take
                    return await fn(request)
            except InputError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            except UnknownModel as exc:
                return JSONResponse({"error": str(exc)}, 404)
            except BodyRefused as exc:  # the rest of the body is not read: the connection closes
                return JSONResponse({"error": str(exc)}, exc.status, {"Connection": "close"})
            except ClientGone:
                return Response(status_code=499)  # nobody to send it to
            except (SequencesFull, GenerationsFull) as exc:
                return JSONResponse({"error": str(exc)}, 429)
            except Exception:  # a failure inside one model never stops the server
                # the server's own bug: the log has the exception, the client a plain line
                log.exception("internal error serving %s", request.url.path)
                return JSONResponse({"error": "internal error; the server log has the cause"}, 500)

        return endpoint

    async def body_of(request: Request) -> bytes:
        limit = min(MAX_BODY, limits.max_body_mb << 20)  # MAX_BODY is read at each request
        return await read_body(request.stream(), request.headers, limit, request.state.take)

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
        return JSONResponse(
            {"model_stats": [m.stats() for m in chosen], "generations": generations.stats()}
        )

    async def client_left(request: Request) -> None:
        """Returns when the client of a request whose body has been read disconnects."""
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def generate(request: Request) -> Any:
        model = model_of(request)
        body = await body_of(request)
        answer = await generate_once(model, body, generations, lambda: client_left(request))
        return Response(status_code=204) if answer is None else JSONResponse(answer)

    class EventStream(StreamingResponse):
        """Server-sent events; a client that reads nothing for --sequence-timeout is dropped."""

        async def stream_response(self, send: Any) -> None:
            try:
                await self._send_all(send)
            finally:  # a dropped stream's generation stops now, not when collected
                await self.body_iterator.aclose()  # type: ignore[attr-defined]

        async def _send_all(self, send: Any) -> None:
            start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            stall, running = limits.sequence_timeout_s, generations
            if not await send_within(send, start, stall, running):
                return
            async for event in self.body_iterator:
                message = {"type": "http.response.body", "body": event, "more_body": True}
                if not await send_within(send, message, stall, running):
                    return
            end = {"type": "http.response.body", "body": b"", "more_body": False}
            await send_within(send, end, stall, running)

    async def generate_stream(request: Request) -> Any:
        model = model_of(request)
        events = generate_events(model, await body_of(request), generations)
        first = await anext(events)  # a bad request or a full server fails here, before the stream

        async def stream() -> AsyncGenerator[bytes, None]:
            yield first
            async with contextlib.aclosing(events):
                async for event in events:
                    yield event

        return EventStream(stream(), media_type="text/event-stream")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async def evict() -> None:  # sequences of clients that went away
            period = min(1.0, limits.sequence_timeout_s / 4)
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
            generations.shutdown()

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
    app.state.generations = generations
    return app
