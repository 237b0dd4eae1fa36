"""Text endpoints for generation bundles, in the shape of Triton's generate extension.

    POST /v2/models/{name}/generate         {"text_input": "The ", "parameters": {...}}
                                            -> {"model_name", "model_version", "text_output"}
    POST /v2/models/{name}/generate_stream  the same request; server-sent events, one per character,
                                            then a last event with "done": true

Parameters: max_tokens (or max_new_tokens), temperature, top_k, top_p, seed, stop (a string or a
list). A bundle with context inputs (e.g. a decoder's encoder outputs) takes them as v2 JSON tensors
in "inputs", batch 1. Prompts and max_tokens are bounded by the server's --max-prompt and
--max-tokens. Tokens are computed by the server's generation workers (generations.py): a
generation stops when its client leaves, and a stream whose client reads nothing for
--sequence-timeout seconds is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from edgekit.errors import InputError
from edgekit.parity import error_line
from edgekit.runtimes.decode import Generation, Sampling
from edgekit.serve import fields
from edgekit.serve.generations import Generations
from edgekit.serve.models import ServeOptions
from edgekit.serve.protocol import json_object

KNOWN = {"max_tokens", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop"}
MAX_STOPS, MAX_STOP = 16, 256  # stop strings per request, characters per stop string
log = logging.getLogger("edgekit.serve")


def _request(
    model: Any, body: bytes, limits: ServeOptions | None = None
) -> tuple[Any, str, Generation]:
    generator, prompt, options, _ = _request_with_context(model, body, limits)
    return generator, prompt, options


def _request_with_context(
    model: Any, body: bytes, limits: ServeOptions | None = None
) -> tuple[Any, str, Generation, dict[str, Any]]:
    """(the Generator, the prompt, how to generate) of a generate request body, within the
    server's limits (its --max-prompt and --max-tokens)."""
    limits = limits or ServeOptions()
    task = model.manifest.task
    if task != "generate" or model.sequences is None:
        raise InputError(f"{model.name} is a {task} model; generate needs text")
    request = json_object(body or b"{}")
    if not isinstance(request.get("text_input"), str):
        raise InputError('a generate request is a JSON object with a "text_input" string')
    prompt = request["text_input"]
    if len(prompt) > limits.max_prompt:
        raise InputError(
            f"text_input has {len(prompt)} characters, more than this server takes "
            f"(--max-prompt {limits.max_prompt})"
        )
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
        limits.max_tokens,  # the server's --max-tokens
    )
    top_k, top_p, seed = params.get("top_k"), params.get("top_p"), params.get("seed")
    sampling = Sampling(
        fields.number(params.get("temperature", 1.0), "temperature", 0.0),
        None if top_k is None else fields.integer(top_k, "top_k", 1),
        None if top_p is None else fields.number(top_p, "top_p", 0.0, 1.0),
    )
    stop = None if params.get("stop") is None else fields.strings(params["stop"], "stop")
    if stop is not None and (len(stop) > MAX_STOPS or max(map(len, stop), default=0) > MAX_STOP):
        raise InputError(
            f"stop: at most {MAX_STOPS} strings of at most {MAX_STOP} characters, got "
            f"{len(stop)} of up to {max(map(len, stop))}"
        )
    options = Generation(
        max_new_tokens,
        sampling,
        None if seed is None else fields.integer(seed, "seed", 0, 2**32 - 1),
        stop,
    )
    context = {}
    if request.get("inputs") is not None:  # a bundle's context inputs, as v2 JSON tensors
        from edgekit.serve.protocol import parse_request

        context = parse_request(json.dumps({"inputs": request["inputs"]}).encode(), None).inputs
    return model.model, prompt, options, context


def _event(model: Any, text: str, done: bool = False) -> bytes:
    payload: dict[str, Any] = {"model_name": model.name, "model_version": "1", "text_output": text}
    if done:
        payload["done"] = True
    return f"data: {json.dumps(payload)}\n\n".encode()


async def generate_once(
    model: Any, body: bytes, generations: Generations, client_left: Callable[[], Awaitable[Any]]
) -> dict[str, Any] | None:
    """The whole text of one generation; None when the client left before it was done (the
    generation then stops, its remaining tokens never computed)."""
    generator, prompt, options, context = _request_with_context(model, body, model.options)
    gone = asyncio.ensure_future(client_left())
    text: list[str] = []
    try:
        chunking = generations.chunks(generator, prompt, options, context)
        async with contextlib.aclosing(chunking) as chunks:
            async for chunk in chunks:
                if gone.done():
                    generations.counts["client_left"] += 1
                    log.info("a /generate client left; its generation stopped")
                    return None
                text += chunk
    finally:
        gone.cancel()
    return {"model_name": model.name, "model_version": "1", "text_output": "".join(text)}


async def generate_events(
    model: Any, body: bytes, generations: Generations
) -> AsyncGenerator[bytes, None]:
    """Server-sent events of a streamed generation. A bad request, or a full server, raises with
    the first event, before the response starts; a failure once it has started ends the stream
    with one event {"error": ...}, as Triton's generate_stream does (its status is already sent)."""
    generator, prompt, options, context = _request_with_context(model, body, model.options)
    started = False
    try:
        async with contextlib.aclosing(
            generations.chunks(generator, prompt, options, context)
        ) as chunks:
            async for chunk in chunks:
                for ch in chunk:
                    yield _event(model, ch)
                    started = True
    except Exception as exc:
        if not started:
            raise
        message = str(exc) if isinstance(exc, InputError) else error_line(exc)
        if not isinstance(exc, InputError):  # ours, not the request's: keep the traceback
            log.exception("a generate_stream failed after it started")
        yield f"data: {json.dumps({'error': message})}\n\n".encode()
        return
    yield _event(model, "", done=True)


async def send_within(send: Any, message: Any, seconds: float, generations: Generations) -> bool:
    """Send one message of a stream, or give up after `seconds` of a client that reads nothing
    (its buffers full); False then, and the stream ends there."""
    try:
        await asyncio.wait_for(send(message), seconds)
        return True
    except asyncio.TimeoutError:  # (TimeoutError itself from Python 3.11)
        generations.counts["stalled"] += 1
        log.warning("dropped a generate_stream whose client read nothing for %g s", seconds)
        return False
