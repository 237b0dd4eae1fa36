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
from typing import Any

from edgekit.errors import InputError
from edgekit.runtimes.decode import MAX_HELD_TOKENS, Generation, Sampling
from edgekit.serve import fields
from edgekit.serve.protocol import json_object

KNOWN = {"max_tokens", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop"}
_DONE = object()


def _request(model: Any, body: bytes) -> tuple[Any, str, Generation]:
    """(the Generator, the prompt, how to generate) of a generate request body."""
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
    max_new_tokens = fields.integer(
        params.get("max_tokens", params.get("max_new_tokens", 100)),
        "max_tokens",
        0,
        MAX_HELD_TOKENS,
    )
    top_k, top_p, seed = params.get("top_k"), params.get("top_p"), params.get("seed")
    sampling = Sampling(
        fields.number(params.get("temperature", 1.0), "temperature", 0.0),
        None if top_k is None else fields.integer(top_k, "top_k", 1),
        None if top_p is None else fields.number(top_p, "top_p", 0.0, 1.0),
    )
    stop = params.get("stop")
    options = Generation(
        max_new_tokens,
        sampling,
        None if seed is None else fields.integer(seed, "seed", 0, 2**32 - 1),
        None if stop is None else fields.strings(stop, "stop"),
    )
    return model.model, request["text_input"], options


def _event(model: Any, text: str, done: bool = False) -> bytes:
    payload: dict[str, Any] = {"model_name": model.name, "model_version": "1", "text_output": text}
    if done:
        payload["done"] = True
    return f"data: {json.dumps(payload)}\n\n".encode()


async def generate_once(model: Any, body: bytes, executor: Executor) -> dict[str, Any]:
    generator, prompt, options = _request(model, body)
    loop = asyncio.get_running_loop()
    text = await loop.run_in_executor(executor, lambda: generator.generate(prompt, options=options))
    return {"model_name": model.name, "model_version": "1", "text_output": text}


async def generate_events(model: Any, body: bytes) -> AsyncIterator[bytes]:
    """Server-sent events of a streamed generation. A bad request raises before the first event."""
    generator, prompt, options = _request(model, body)
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
            for ch in generator.stream(prompt, options=options):
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
