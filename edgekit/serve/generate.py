"""Text endpoints for generation bundles, in the shape of Triton's generate extension.

    POST /v2/models/{name}/generate         {"text_input": "The ", "parameters": {...}}
                                            -> {"model_name", "model_version", "text_output"}
    POST /v2/models/{name}/generate_stream  the same request; server-sent events, one per character,
                                            then a last event with "done": true

Parameters: max_tokens (or max_new_tokens), temperature, top_k, top_p, seed, stop (a string or a
list). The Generator runs in a worker thread; a stream whose client disconnects stops generating.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from edgekit.errors import InputError
from edgekit.runtimes.decode import Sampling
from edgekit.serve.protocol import json_object

KNOWN = {"max_tokens", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop"}
_DONE = object()


@dataclass(frozen=True)
class GenerateRequest:
    """A generate request: the prompt, how many tokens, how to pick them, and where to stop."""

    prompt: str
    max_new_tokens: int = 100
    sampling: Sampling = field(default_factory=Sampling)
    seed: int | None = None
    stop: str | list[str] | None = None

    def keywords(self) -> dict[str, Any]:
        """The Generator's keyword arguments (generate and stream take the same)."""
        s = self.sampling
        return {"max_new_tokens": self.max_new_tokens, "temperature": s.temperature,
                "top_k": s.top_k, "top_p": s.top_p, "seed": self.seed, "stop": self.stop}  # fmt: skip


def _request(model: Any, body: bytes) -> tuple[Any, GenerateRequest]:
    """(the Generator, the request) of a generate request body."""
    task = model.manifest.task
    if task != "generate" or model.sequences is None:
        raise InputError(f"{model.name} is a {task} model; generate needs text")
    request = json_object(body or b"{}")
    if not isinstance(request.get("text_input"), str):
        raise InputError('a generate request is a JSON object with a "text_input" string')
    params = request.get("parameters") or {}
    if not isinstance(params, dict):
        raise InputError('"parameters" must be an object')
    unknown = sorted(set(params) - KNOWN)
    if unknown:
        raise InputError(f"unknown generate parameters {unknown}; known: {sorted(KNOWN)}")
    max_new_tokens = params.get("max_tokens", params.get("max_new_tokens", 100))
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool):
        raise InputError(f"max_tokens must be an integer, got {max_new_tokens!r}")
    sampling = Sampling(params.get("temperature", 1.0), params.get("top_k"), params.get("top_p"))
    return model.model, GenerateRequest(
        request["text_input"], max_new_tokens, sampling, params.get("seed"), params.get("stop")
    )


def _event(model: Any, text: str, done: bool = False) -> bytes:
    payload: dict[str, Any] = {"model_name": model.name, "model_version": "1", "text_output": text}
    if done:
        payload["done"] = True
    return f"data: {json.dumps(payload)}\n\n".encode()


async def generate_once(model: Any, body: bytes, executor: Executor) -> dict[str, Any]:
    generator, req = _request(model, body)
    loop = asyncio.get_running_loop()
    text = await loop.run_in_executor(
        executor, lambda: generator.generate(req.prompt, **req.keywords())
    )
    return {"model_name": model.name, "model_version": "1", "text_output": text}


async def generate_events(model: Any, body: bytes) -> AsyncIterator[bytes]:
    """Server-sent events of a streamed generation. A bad request raises before the first event."""
    generator, req = _request(model, body)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def put(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the server's loop has closed
            stop.set()

    def produce() -> None:
        try:
            for ch in generator.stream(req.prompt, **req.keywords()):
                if stop.is_set():  # the client went away
                    return
                put(ch)
        except Exception as exc:  # bad arguments (the first item), or a failing model
            put(exc)
        finally:
            put(_DONE)

    threading.Thread(target=produce, name="edgekit-generate", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                yield _event(model, "", done=True)
                return
            if isinstance(item, Exception):
                raise item
            yield _event(model, item)
    finally:
        stop.set()
