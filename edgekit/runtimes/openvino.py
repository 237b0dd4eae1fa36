"""OpenVINO backend (`device="openvino"`, the `openvino` extra): the runtime Intel edge devices ship.

The same bundle, manifest and I/O contract as ONNX Runtime: OpenVINO reads model.onnx itself. Plain
calls run on a model compiled with dynamic shapes. Recurrent stepping compiles the one-token graph
(the bundle's step graph where it has one) once per batch size with static shapes, B and T = 1,
with the state made variables the infer request keeps (openvino_stateful.py), as OpenVINO runs its
own recurrent pipelines. Where this build cannot make a graph stateful, the state is explicit in
two numpy buffer sets shared with two infer requests (OpenVinoStepper): request k reads set k and
writes set 1-k, so steps ping-pong with no copy and no per-step binding. Binding once and never
calling `set_tensor` per step matters: swapping state tensors each step costs about as much as the
step itself on a small LSTM. Where OpenVINO cannot read the sequence graph (the scripted `Loop`
of hand-written cells), the step graph serves every call, a prompt one token at a time.

Traps handled here: the CPU plugin may pick bf16 inference on CPUs that have it, so f32 precision
is asked for (parity is checked against fp32 torch), and bf16 only for a bundle's gated bf16
variant (`edgekit quantize --bf16`); `ov.Tensor(array, shared_memory=True)` does not
keep `array` alive, so every shared array is owned by the object that holds the tensor.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.bundle.directory import Bundle
from edgekit.bundle.io import TIME, IOContract
from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.runtimes import registry
from edgekit.runtimes.base import Backend
from edgekit.runtimes.stepper import (
    StepBuffers,
    checked_state,
    prefill_chunks,
    refuse_unless_ort,
)

NAME = "openvino"


def ov() -> Any:
    return require("openvino", "the OpenVINO backend (pip install 'edgekit-ml[openvino]')")


PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # a bundle's precision -> OpenVINO's inference hint


def cpu_bf16() -> bool:
    """Whether OpenVINO's CPU plugin reports bf16 arithmetic here (AVX512_BF16 or AMX)."""
    return "BF16" in ov().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def auto_precision(manifest: Manifest) -> str:
    """`precision="auto"` on OpenVINO: the bf16 variant where it passed its gates, measured faster
    than f32 and this CPU has bf16; else what auto picks on any CPU."""
    bf16 = manifest.variant("bf16")
    if bf16 is not None and bf16.passed and bf16.speed_ratio < 1.0 and cpu_bf16():
        return "bf16"
    return manifest.auto_precision("cpu")


def compile_config(
    threads: int | None, hint: str = "LATENCY", precision: str = "fp32"
) -> dict[str, Any]:
    if precision not in PRECISIONS:
        raise InputError(
            f"OpenVINO runs fp32 or bf16 bundles, not {precision}; load it on onnxruntime"
        )
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": hint,
        "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
    }
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        config["INFERENCE_NUM_THREADS"] = threads
    return config


class OpenVinoBackend(Backend):
    name = NAME
    device = "cpu"

    def __init__(
        self,
        model_path: str | Path,
        contract: IOContract,
        threads: int | None = None,
        step_graph: Path | None = None,
        hint: str = "LATENCY",
        precision: str = "fp32",
    ) -> None:
        super().__init__(contract)
        self.core = ov().Core()
        if precision == "bf16" and not cpu_bf16():
            raise InputError(
                "this CPU has no bf16 arithmetic OpenVINO can use (its OPTIMIZATION_CAPABILITIES "
                "lack BF16); load the fp32 bundle"
            )
        self.config = compile_config(threads, hint, precision)
        self.precision = precision
        self.model_path = Path(model_path)
        self.step_path = step_graph or self.model_path
        self.stepwise = False  # True: runs T > 1 calls one token at a time on the step graph
        try:
            model = self._read(self.model_path)
        except InputError:
            if step_graph is None:
                raise
            # OpenVINO's ONNX frontend rejects some sequence graphs (the scripted Loop of
            # hand-written cells); the step graph is the same function, one token per call
            model, self.stepwise = self._read(step_graph), True
        self.compiled = self.core.compile_model(model, "CPU", self.config)
        self._local = threading.local()  # an infer request is not thread-safe: one per thread
        self._step_models: dict[int, Any] = {}
        self._stateful_models: dict[int, Any] = {}

    def _read(self, path: Path) -> Any:
        try:
            model = self.core.read_model(str(path))
        except Exception as exc:  # OpenVINO's own reason (unsupported op, bad file), one line
            reason = " ".join(str(exc).split())[:500]
            raise InputError(f"OpenVINO cannot load {path}: {reason}") from None
        names = {port.get_any_name() for port in model.inputs}
        expected = {t.name for t in self.contract.inputs}
        if names != expected:
            raise InputError(f"{path}: graph inputs {sorted(names)}, manifest {sorted(expected)}")
        return model

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.stepwise:
            return self._run_stepwise(feeds)
        return self._call(feeds)

    def _run_stepwise(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The sequence graph's outputs from T one-token calls, state carried between them."""
        layout = self.layout
        tokens = feeds[layout.tokens.name]
        time_axis = layout.token_axes[1]
        state = {s.input: feeds[s.input] for s in layout.state}
        logits, out = [], {}
        for t in range(tokens.shape[time_axis]):
            one = np.take(tokens, [t], axis=time_axis)  # (B, 1) in the graph's layout
            out = self._call({layout.tokens.name: one, **state})
            state = layout.state_after(out)
            logits.append(out[layout.logits.name])
        out[layout.logits.name] = np.concatenate(logits, axis=layout.logits_axes[1])
        return out

    def _call(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = self._request()
        request.infer(dict(feeds))
        # copies: the request's output memory is reused by its next call
        return {t.name: request.get_tensor(t.name).data.copy() for t in self.contract.outputs}

    def prepared(self, feeds: Mapping[str, np.ndarray]) -> Any:
        """Inputs bound once to a request of their own (shared, kept alive here), as a tuned
        application would run a fixed-shape call."""
        request = self.compiled.create_infer_request()
        frozen = {name: np.ascontiguousarray(value) for name, value in feeds.items()}
        for name, value in frozen.items():
            request.set_tensor(name, ov().Tensor(value, shared_memory=True))
        # the outputs bound too, to arrays of the shapes a first call gives: each call then
        # writes into memory held here, with no tensor looked up or wrapped per call
        request.infer()
        outputs = {t.name: request.get_tensor(t.name).data.copy() for t in self.contract.outputs}
        for name, value in outputs.items():
            request.set_tensor(name, ov().Tensor(value, shared_memory=True))
        first = outputs[self.contract.outputs[0].name]

        def run() -> Any:
            request.infer()
            return first, frozen, outputs  # the shared inputs and outputs stay alive with it

        return run

    def step_model(self, batch: int) -> Any:
        """The one-token graph compiled with static shapes for `batch` streams (cached)."""
        if batch not in self._step_models:
            model = self._static_step(batch)
            self._step_models[batch] = self.core.compile_model(model, "CPU", self.config)
        return self._step_models[batch]

    def _static_step(self, batch: int) -> Any:
        """The one-token graph read afresh, reshaped to static shapes: `batch` streams, T = 1."""
        model = self._read(self.step_path)
        layout = self.layout
        shapes = {layout.tokens.name: list(layout.token_shape(batch, 1))}
        shapes |= {s.input: list(s.shape(batch)) for s in layout.state}
        model.reshape(shapes)
        return model

    def stateful_model(self, batch: int) -> Any:
        """The one-token graph, static shapes for `batch` streams, its state made variables the
        request keeps (openvino_stateful.py), compiled once per batch; None where this OpenVINO
        build cannot make it stateful."""
        from edgekit.runtimes.openvino_stateful import make_stateful

        transform = make_stateful()
        if transform is None:
            return None
        if batch not in self._stateful_models:
            model = self._static_step(batch)
            transform(model, dict(self.layout.pairs))
            self._stateful_models[batch] = self.core.compile_model(model, "CPU", self.config)
        return self._stateful_models[batch]

    def stepper(self, batch: int) -> Any:
        """The state inside OpenVINO (stateful, static shapes), as OpenVINO steps fastest; the
        explicit two-buffer stepper where this build lacks the transformation."""
        from edgekit.runtimes.openvino_stateful import StatefulOpenVinoStepper

        if self.layout.context or self.layout.contract.growing:
            return OpenVinoStepper(self, batch)  # which refuses them in one line
        compiled = self.stateful_model(batch)
        if compiled is None:
            return OpenVinoStepper(self, batch)
        return StatefulOpenVinoStepper(self, batch, compiled)


class OpenVinoStepper(StepBuffers):
    """Static-shape stepping with explicit state in two shared buffer sets (see the module doc)."""

    def __init__(self, backend: OpenVinoBackend, batch: int) -> None:
        super().__init__(backend.layout, batch)
        refuse_unless_ort(self.layout.contract)
        tensor = ov().Tensor
        self.backend = backend
        compiled = backend.step_model(batch)
        self.buffers = [
            {name: np.zeros(shape, np.float32) for name, shape in self.state_shapes.items()}
            for _ in range(2)
        ]
        self.requests = []
        for k in range(2):
            request = compiled.create_infer_request()
            request.set_tensor(self.layout.tokens.name, tensor(self.tokens, shared_memory=True))
            request.set_tensor(self.layout.logits.name, tensor(self.logits, shared_memory=True))
            for name_in, name_out in self.layout.pairs:
                request.set_tensor(name_in, tensor(self.buffers[k][name_in], shared_memory=True))
                out = self.buffers[1 - k][name_in]
                request.set_tensor(name_out, tensor(out, shared_memory=True))
            self.requests.append(request)
        self.current = 0  # self.buffers[current] holds the live state

    def step(self) -> np.ndarray:
        self.requests[self.current].infer()
        self.current ^= 1
        return self.next_logits

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Feed (B, T) token ids on the dynamic-shape graph (in calls of at most PREFILL_CHUNK
        steps); return logits (B, V)."""
        for piece in prefill_chunks(ids, self.batch, self.layout.contract.most(TIME)):
            self._prefill_call(piece)
        return self.next_logits

    def _prefill_call(self, ids: np.ndarray) -> None:
        live = self.buffers[self.current]
        out = self.backend.run({self.layout.tokens.name: self.layout.token_feed(ids), **live})
        spare = self.buffers[1 - self.current]
        for name, value in self.layout.state_after(out).items():
            spare[name][...] = value
        self.current ^= 1
        self.next_logits[...] = self.layout.last_logits(out[self.layout.logits.name])

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.buffers[self.current].items()}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        live = self.buffers[self.current]
        for name, value in checked_state(state, self.state_shapes).items():
            live[name][...] = value

    def reset(self) -> None:
        for value in self.buffers[self.current].values():
            value[...] = 0


def _unavailable(bundle: Path, manifest: Manifest | None) -> str | None:
    try:
        ov()
    except ImportError as exc:
        return str(exc)
    return None


def _open(
    bundle: Path, manifest: Manifest | Mapping[str, Any], options: registry.OpenOptions
) -> Backend:
    manifest = Manifest.of(manifest)
    # the step graph export kept, whatever export chose for ONNX Runtime's steps, unless told
    # not to (step_graph=False)
    step = (
        Bundle(Path(bundle), manifest).any_step_graph if options.step_graph is not False else None
    )
    return OpenVinoBackend(
        Path(bundle) / manifest.graph,
        manifest.contract,
        options.threads,
        step_graph=step,
        precision=manifest.precision,
    )


registry.register(
    registry.BackendEntry(
        name=NAME,
        device="cpu",
        summary="OpenVINO on the CPU (the openvino extra)",
        unavailable=_unavailable,
        open=_open,
        model_bytes=registry.graph_bytes,
        rank=20,
        runs_variants=True,
    )
)
