"""Native TensorRT backend: deserialise, set shapes, execute_async_v3 on a stream.

Device buffers are allocated once at the engine profile's largest shapes. For generation,
`TrtStepper` keeps ping-pong state buffers on the device and replays the T = 1 step as a CUDA graph
(one graph per ping-pong parity, since a graph records fixed addresses); only the token goes in and
the logits row comes out, through pinned host memory. tensorrt and cuda-python are imported only here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.bundle.io import IOContract
from edgekit.bundle.manifest import Engine, Manifest
from edgekit.errors import InputError
from edgekit.runtimes import cuda, registry
from edgekit.runtimes.base import Backend
from edgekit.runtimes.engine_format import pick_engine, plan_buffers
from edgekit.runtimes.stepper import checked_state, prefill_chunks, refuse_unless_ort


def unavailable_reason(bundle: Path, manifest: Manifest | Mapping[str, Any] | None) -> str | None:
    """Why the native TensorRT backend cannot run this bundle here (None as the manifest: any
    bundle), or None if it can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (pip install 'edgekit-ml[gpu]' on an NVIDIA machine)"
    if manifest is not None and not Manifest.engines_of(manifest):
        return f"the bundle has no TensorRT engine; build one with: edgekit engine {bundle}"
    return None


class TrtBackend(Backend):
    name = "trt"
    device = "cuda"

    def __init__(
        self, engine_path: Path, contract: IOContract, record: Engine | Mapping[str, Any]
    ) -> None:
        super().__init__(contract)
        self.trt = require("tensorrt", "the TensorRT backend")
        self.record = engine = Engine.of(record)
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.engine = self.trt.Runtime(self.logger).deserialize_cuda_engine(
            engine_path.read_bytes()
        )
        if self.engine is None:
            raise InputError(
                f"TensorRT could not load {engine_path}; rebuild it with: edgekit engine BUNDLE"
            )
        self.context = self.engine.create_execution_context()
        self.stream = cuda.new_stream()
        self.max_batch, self.max_seq = engine.max_batch, engine.max_seq
        plan = plan_buffers(contract, self.max_batch, self.max_seq)
        self.buffers = {name: cuda.DeviceBuffer(nbytes) for name, nbytes in plan.items()}
        for name, buf in self.buffers.items():
            self.context.set_tensor_address(name, buf.ptr)

    @classmethod
    def from_bundle(cls, bundle: Path, manifest: Manifest | Mapping[str, Any]) -> TrtBackend:
        manifest = Manifest.of(manifest)
        trt = require("tensorrt", "the TensorRT backend")
        gpu, cc = cuda.gpu_info()
        engine = pick_engine(manifest, gpu, cc, trt.__version__)
        return cls(Path(bundle) / engine.file, manifest.contract, engine)

    def _check_limits(self, feeds: Mapping[str, np.ndarray]) -> None:
        limits = {
            self.contract.role_axis("batch"): self.max_batch,
            self.contract.role_axis("time"): self.max_seq,
        }
        for t in self.contract.inputs:
            for axis, dim in enumerate(t.shape):
                limit = limits.get(str(dim))
                if limit is not None and feeds[t.name].shape[axis] > limit:
                    raise InputError(
                        f"{t.name} axis {axis} ({dim}) is {feeds[t.name].shape[axis]}, above "
                        f"the engine profile's max {limit}; rebuild with a larger --max-{dim}"
                    )

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_limits(feeds)
        staged = {n: np.ascontiguousarray(feeds[n]) for n in self.contract.input_names}
        for name, arr in staged.items():
            self.context.set_input_shape(name, arr.shape)
            cuda.memcpy_htod(self.buffers[name].ptr, arr, self.stream)
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        outputs = {}
        for t in self.contract.outputs:
            shape = tuple(self.context.get_tensor_shape(t.name))
            out = np.empty(shape, dtype=t.dtype)
            cuda.memcpy_dtoh(out, self.buffers[t.name].ptr, self.stream)
            outputs[t.name] = out
        cuda.synchronize(self.stream)
        return outputs

    def stepper(self, streams: int) -> TrtStepper:
        return TrtStepper(self, streams)


class TrtStepper:
    """The BoundStepper interface (tokens, logits, step, prefill, state) on a TensorRT engine."""

    def __init__(self, backend: TrtBackend, streams: int) -> None:
        if streams > backend.max_batch:
            raise InputError(f"{streams} streams exceed the engine's max batch {backend.max_batch}")
        refuse_unless_ort(backend.contract)
        self.backend, self.batch = backend, streams
        self.context = backend.engine.create_execution_context()  # its own addresses and shapes
        self.stream = cuda.new_stream()
        self.layout = layout = backend.layout
        self.pairs = layout.pairs
        self._tokens = cuda.PinnedArray(layout.token_shape(streams, 1), np.int64)
        self._logits = cuda.PinnedArray(layout.logits_shape(streams, 1), np.float32)
        self.tokens, self.logits = self._tokens.array, self._logits.array
        self.next_tokens = layout.step_tokens(self.tokens)  # (B,) view
        self.next_logits = layout.last_logits(self.logits)  # (B, V) view
        self.token_dev = cuda.DeviceBuffer(streams * backend.max_seq * 8)
        self.logits_dev = cuda.DeviceBuffer(streams * backend.max_seq * self.logits.shape[-1] * 4)
        self.state_shapes = {s.input: s.shape(streams) for s in layout.state}
        self.state_bytes = {i: int(np.prod(s)) * 4 for i, s in self.state_shapes.items()}
        self.state = [
            {i: cuda.DeviceBuffer(n) for i, n in self.state_bytes.items()} for _ in range(2)
        ]
        self.current = 0
        self.reset()
        self.graphs = [self._capture(k) for k in range(2)]

    def _bind(self, k: int, time: int) -> None:
        ctx = self.context
        token = self.layout.tokens.name
        ctx.set_input_shape(token, self.layout.token_shape(self.batch, time))
        ctx.set_tensor_address(token, self.token_dev.ptr)
        ctx.set_tensor_address(self.layout.logits.name, self.logits_dev.ptr)
        for name_in, name_out in self.pairs:
            ctx.set_input_shape(name_in, self.state_shapes[name_in])
            ctx.set_tensor_address(name_in, self.state[k][name_in].ptr)
            ctx.set_tensor_address(name_out, self.state[1 - k][name_in].ptr)

    def _enqueue_step(self) -> None:
        cuda.memcpy_htod(self.token_dev.ptr, self.tokens, self.stream)
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        cuda.memcpy_dtoh(self.logits, self.logits_dev.ptr, self.stream)

    def _capture(self, k: int) -> cuda.CapturedGraph:
        self._bind(k, 1)
        self._enqueue_step()  # one plain run first: TensorRT finishes lazy set-up outside the capture
        cuda.synchronize(self.stream)
        self.reset()
        return cuda.CapturedGraph(self.stream, self._enqueue_step)

    def step(self) -> np.ndarray:
        self.graphs[self.current].launch()
        cuda.synchronize(self.stream)
        self.current ^= 1
        return self.next_logits

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Feed (B, T) token ids in pieces of at most the engine's longest sequence (one token at
        a time on a step-only bundle); return the last step's logits (B, V)."""
        for piece in prefill_chunks(ids, self.batch, self.backend.max_seq):
            self._prefill_call(piece)
        return self.next_logits

    def _prefill_call(self, ids: np.ndarray) -> None:
        t = ids.shape[1]
        self._bind(self.current, t)
        cuda.memcpy_htod(self.token_dev.ptr, self.layout.token_feed(ids), self.stream)
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        full = np.empty(self.layout.logits_shape(self.batch, t), np.float32)
        cuda.memcpy_dtoh(full, self.logits_dev.ptr, self.stream)
        cuda.synchronize(self.stream)
        self.current ^= 1
        self.next_logits[...] = self.layout.last_logits(full)

    def get_state(self) -> dict[str, np.ndarray]:
        out = {}
        for name, shape in self.state_shapes.items():
            out[name] = np.empty(shape, np.float32)
            cuda.memcpy_dtoh(out[name], self.state[self.current][name].ptr, self.stream)
        cuda.synchronize(self.stream)
        return out

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        for name, arr in checked_state(state, self.state_shapes).items():
            cuda.memcpy_htod(self.state[self.current][name].ptr, arr, self.stream)
        cuda.synchronize(self.stream)

    def set_context(self, values: Mapping[str, np.ndarray]) -> None:
        if values:  # a bundle without context reaches here only with some given
            refuse_unless_ort(self.backend.contract)
            raise InputError("this bundle takes no context")

    def reset(self) -> None:
        for name, nbytes in self.state_bytes.items():
            cuda.memset(self.state[self.current][name].ptr, nbytes, self.stream)
        cuda.synchronize(self.stream)


def _open(bundle: Path, manifest: Manifest | Mapping[str, Any], options: Any) -> TrtBackend:
    return TrtBackend.from_bundle(bundle, manifest)


def _engine_bytes(bundle: Path, manifest: Manifest | Mapping[str, Any]) -> int:
    return sum((Path(bundle) / e.file).stat().st_size for e in Manifest.of(manifest).engines)


registry.register(
    registry.BackendEntry(
        name="trt",
        device="cuda",
        summary="a native TensorRT engine built into the bundle (edgekit engine)",
        unavailable=unavailable_reason,
        open=_open,
        model_bytes=_engine_bytes,
        rank=40,
    )
)
