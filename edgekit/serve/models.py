"""One bundle as the server sees it: v2 metadata from the manifest, and how its requests run
(dynamic batching for stateless models, per-sequence state for recurrent ones)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.runtimes.decode import MAX_HELD_TOKENS
from edgekit.serve.batching import Batcher
from edgekit.serve.protocol import v2_datatype
from edgekit.serve.sequences import SequenceStore

MAX_ROWS = 65_536  # rows in one batched call
MAX_WAIT_MS = 60_000.0  # a batch waits at most a minute for company
MAX_SEQUENCES = 1_000_000
MAX_IDLE_S = 86_400.0  # a sequence idle for a day is evicted, whatever was asked
MAX_PROMPT = 1 << 20  # characters; prefill runs in bounded chunks, but time grows with length
MAX_GENERATIONS = 4096
MAX_HEADER_S = 3600.0  # seconds a request's head may take, at most
MAX_CONNECTIONS = 65_536


def half_the_cores() -> int:
    """Generation workers by default: inference keeps the other half of the machine."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class ServeOptions:
    max_batch: int = 32  # rows one batched call may hold
    max_wait_ms: float = 0.0  # extra wait for others (0: batch whatever queued while busy)
    max_sequences: int = 256  # live recurrent sequences at once
    sequence_timeout_s: float = 60.0  # an idle sequence is evicted after this
    device: str = "cpu"
    threads: int | None = None
    precision: str = "fp32"  # or a variant from edgekit quantize: int8, fp16, auto
    max_tokens: int = 4096  # tokens one generate request may ask for
    max_prompt: int = 16_384  # characters of one generate prompt
    max_generations: int = 64  # generations live at once (then 429)
    generation_threads: int = field(default_factory=half_the_cores)
    max_body_mb: int = 64  # MiB in one request body (then 413), as Triton's HTTP default
    header_timeout_s: float = 10.0  # a request's head must arrive within this (then closed)
    max_connections: int = 1024  # connections served at once (then 503)

    def check(self) -> None:
        """Every option finite and within what a server can honour (NaN and inf refused)."""
        for flag, value, top in (
            ("--max-tokens", self.max_tokens, MAX_HELD_TOKENS),
            ("--max-prompt", self.max_prompt, MAX_PROMPT),
            ("--max-generations", self.max_generations, MAX_GENERATIONS),
            ("--generation-threads", self.generation_threads, 256),
            ("--max-body-mb", self.max_body_mb, 1024),
            ("--max-connections", self.max_connections, MAX_CONNECTIONS),
        ):
            if not 1 <= value <= top:
                raise InputError(f"{flag} must be 1 .. {top}, got {value}")
        if not 1 <= self.max_batch <= MAX_ROWS:
            raise InputError(f"--max-batch must be 1 .. {MAX_ROWS}, got {self.max_batch}")
        if not 0 <= self.max_wait_ms <= MAX_WAIT_MS:
            raise InputError(
                f"--max-wait-ms must be a number of milliseconds 0 .. {MAX_WAIT_MS}, "
                f"got {self.max_wait_ms}"
            )
        if not 1 <= self.max_sequences <= MAX_SEQUENCES:
            raise InputError(
                f"--max-sequences must be 1 .. {MAX_SEQUENCES}, got {self.max_sequences}"
            )
        if not 0 < self.header_timeout_s <= MAX_HEADER_S:
            raise InputError(
                f"--header-timeout must be seconds in (0, {MAX_HEADER_S:g}], "
                f"got {self.header_timeout_s}"
            )
        if not 0 < self.sequence_timeout_s <= MAX_IDLE_S:
            raise InputError(
                f"--sequence-timeout must be seconds in (0, {MAX_IDLE_S}], "
                f"got {self.sequence_timeout_s}"
            )


def check_ranges(contract: Any, feeds: Mapping[str, np.ndarray]) -> None:
    """Integer inputs with a declared range (token ids, categories) must lie in [lo, hi): an id
    outside it is the client's mistake (400), not a failure inside the model."""
    for spec in contract.inputs:
        value = feeds.get(spec.name)
        if value is None or value.dtype.kind not in "iu" or value.size == 0:
            continue
        if spec.range is None and spec.name != contract.token_input:
            continue
        lo, hi = contract.int_range(spec)
        if value.min() < lo or value.max() >= hi:
            raise InputError(
                f"{spec.name}: values must be in [{lo}, {hi}), got {value.min()} .. {value.max()}"
            )


def parse_bundle_arg(text: str) -> tuple[str, Path]:
    """`NAME=PATH` or `PATH` (the model is then named after the bundle's directory)."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = Path(text).resolve().name, text
    if not name or "/" in name:
        raise InputError(f"model name {name!r} (from {text!r}) must be non-empty, without '/'")
    return name, Path(path)


class ServedModel:
    def __init__(self, name: str, bundle: Path, options: ServeOptions, executor: Executor) -> None:
        from edgekit.runtimes.loader import load

        self.name, self.bundle, self.options = name, bundle, options
        self.model = load(
            bundle, device=options.device, threads=options.threads, precision=options.precision
        )
        self.manifest: Manifest = self.model.manifest
        backend = self.model.backend
        self.contract = backend.contract
        self.batcher = Batcher(backend, options.max_batch, options.max_wait_ms / 1e3, executor)
        self.sequences: SequenceStore | None = None
        if self.contract.state:  # recurrent: state stays on the server, per sequence
            self.sequences = SequenceStore(
                backend, options.max_sequences, options.sequence_timeout_s, self.batcher
            )

    def metadata(self) -> dict[str, Any]:
        """v2 model metadata; a recurrent model shows its token input and logits only."""
        if self.sequences is not None:
            layout = self.sequences.layout  # tokens, and any context sent at sequence_start
            inputs = [layout.tokens, *(spec for spec, _ in layout.context)]
            outputs = [layout.logits]
        else:
            inputs, outputs = list(self.contract.inputs), list(self.contract.outputs)

        def tensor(spec: Any) -> dict[str, Any]:
            shape = [d if isinstance(d, int) else -1 for d in spec.shape]
            return {"name": spec.name, "datatype": v2_datatype(spec.dtype), "shape": shape}

        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "edgekit_onnx",
            "inputs": [tensor(t) for t in inputs],
            "outputs": [tensor(t) for t in outputs],
            "parameters": {
                "task": self.manifest.task,
                "sequence": self.sequences is not None,
            },
        }

    async def infer(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        check_ranges(self.contract, inputs)
        if self.sequences is not None:
            return dict(await self.sequences.infer(inputs, parameters))
        return await self.batcher.submit(inputs)

    def config(self) -> dict[str, Any]:
        """The model configuration as Triton's JSON has it: what `edgekit triton` writes into
        config.pbtxt for this bundle, with this server's batch limit."""
        from edgekit.serve.triton import triton_config

        config, _ = triton_config(
            self.name, self.contract, "onnxruntime_onnx", self.options.max_batch
        )
        return config

    def classified(
        self, outputs: dict[str, np.ndarray], classification: Mapping[str, int]
    ) -> dict[str, np.ndarray]:
        """Triton's classification extension: each requested output becomes its top K classes
        along the last axis, as BYTES "score:index[:label]" (labels from the manifest)."""
        labels = self.manifest.labels
        out = dict(outputs)
        for name, k in classification.items():
            if name not in out:
                continue  # the unknown name is reported with the others
            scores = np.asarray(out[name], np.float32)
            if scores.ndim == 0 or not k >= 1:
                raise InputError(f"{name}: classification needs K >= 1 and a class axis")
            top = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
            picked = np.take_along_axis(scores, top, axis=-1)
            text = np.empty(top.shape, dtype=object)
            for at in np.ndindex(top.shape):
                i = int(top[at])
                label = f":{labels[i]}" if labels is not None and i < len(labels) else ""
                text[at] = f"{picked[at]:f}:{i}{label}".encode()
            out[name] = text
        return out

    def stats(self) -> dict[str, Any]:
        out = self.batcher.stats.to_json(self.name)  # Triton's format, for its tools
        out["batching"] = {"requests": self.batcher.requests, "calls": self.batcher.calls}
        if self.sequences is not None:
            out["sequences"] = self.sequences.stats()
        return out
