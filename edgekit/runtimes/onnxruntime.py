"""ONNX Runtime backend: device -> execution providers, session options, plain and bound calls.

Registers four backends: ort-cpu, ort-cuda, ort-cuda-graph (the step replayed as a CUDA graph) and
ort-trt (ONNX Runtime's TensorRT execution provider).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.bundle.directory import Bundle
from edgekit.bundle.dtypes import DTYPES
from edgekit.bundle.io import IOContract
from edgekit.bundle.manifest import Manifest
from edgekit.bundle.validate import OPTIMIZATION_LEVELS as LEVEL_NAMES
from edgekit.errors import InputError
from edgekit.files import cache_dir
from edgekit.runtimes import registry
from edgekit.runtimes.base import Backend
from edgekit.runtimes.growing import GrowingStepper
from edgekit.runtimes.stepper import BoundStepper, HostStepper
from edgekit.runtimes.threads import ONE_THREAD_STREAMS, step_threads

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_PREFERENCE = ("tensorrt", "cuda", "cpu")  # what `auto` tries, best first


def ort() -> Any:
    return require("onnxruntime", "running bundles")


def missing_provider(device: str) -> str | None:
    """Why ONNX Runtime cannot run on `device` here, or None if it can."""
    try:
        available = ort().get_available_providers()
    except ImportError as exc:
        return str(exc)
    if PROVIDERS[device][0] not in available:
        return (
            f"device {device!r} needs {PROVIDERS[device][0]}, which this onnxruntime does not "
            f"have; available providers: {', '.join(available)} (for GPUs: pip install 'edgekit-ml[gpu]')"
        )
    return None


def resolve_device(device: str) -> str:
    """`auto` -> the best available device; a requested device that is missing is an error."""
    if device == "auto":
        return next(d for d in _PREFERENCE if missing_provider(d) is None)
    if device not in PROVIDERS:
        raise InputError(f"unknown device {device!r}; known devices: auto, {', '.join(PROVIDERS)}")
    reason = missing_provider(device)
    if reason is not None:
        raise InputError(reason)
    return device


def provider_list(
    device: str, cuda_graph: bool = False, trt_cache_dir: Path | None = None, trt_fp16: bool = False
) -> list[Any]:
    """Providers with their options: CUDA graphs on the CUDA EP; an engine cache for the TensorRT EP
    (building TensorRT engines takes seconds to minutes, so they are kept between sessions)."""
    providers: list[Any] = []
    for name in PROVIDERS[device]:
        options: dict[str, str] = {}
        if name == "CUDAExecutionProvider" and cuda_graph:
            options["enable_cuda_graph"] = "1"
        if name == "TensorrtExecutionProvider" and trt_cache_dir is not None:
            options |= {
                "trt_engine_cache_enable": "1",
                "trt_engine_cache_path": str(trt_cache_dir),
                "trt_timing_cache_enable": "1",
                "trt_fp16_enable": "1" if trt_fp16 else "0",
            }
        providers.append((name, options) if options else name)
    return providers


# ORT graph optimisation levels by the names a variant's record uses ("session" in the manifest):
# ORT 1.32 segfaults creating an fp16 LSTM session with all optimisations, so such a variant
# records the highest level that opened it in a subprocess, and every session honours it.
OPTIMIZATION_LEVELS = dict(
    zip(
        LEVEL_NAMES,  # "all", "extended", "basic", "disabled"
        ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC", "ORT_DISABLE_ALL"),
        strict=True,
    )
)


def session_options(
    threads: int | None = None, optimized_model: Path | None = None, optimization: str = "all"
) -> Any:
    so = ort().SessionOptions()
    if optimization not in OPTIMIZATION_LEVELS:
        raise InputError(f"unknown graph optimisation level {optimization!r}")
    level = OPTIMIZATION_LEVELS[optimization]
    so.graph_optimization_level = getattr(ort().GraphOptimizationLevel, level)
    so.log_severity_level = 4  # fatal only: a failed run raises with the same message, once
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if optimized_model is not None:
        so.optimized_model_filepath = str(optimized_model)
    return so


ORT_TYPES = {d.onnx: d.numpy for d in DTYPES.values()}  # "tensor(float)" -> "float32"


def check_interface(session: Any, contract: IOContract, path: Any) -> None:
    """The graph must have exactly the manifest's inputs and outputs, with its dtypes."""
    problems = []
    for kind, got, want in (
        ("inputs", session.get_inputs(), contract.inputs),
        ("outputs", session.get_outputs(), contract.outputs),
    ):
        graph = {v.name: ORT_TYPES.get(v.type, v.type) for v in got}
        manifest = {t.name: t.dtype for t in want}
        if set(graph) != set(manifest):
            problems.append(
                f"{kind} {sorted(graph)} in the graph, {sorted(manifest)} in the manifest"
            )
        problems += [
            f"{name} is {graph[name]} in the graph, {dtype} in the manifest"
            for name, dtype in manifest.items()
            if name in graph and graph[name] != dtype
        ]
    if problems:
        raise InputError(f"{path} does not match its manifest: " + "; ".join(problems))


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        contract: IOContract,
        device: str = "cpu",
        threads: int | None = None,
        optimized_model: Path | None = None,
        cuda_graph: bool = False,
        trt_cache_dir: Path | None = None,
        trt_fp16: bool = False,
        optimization: str = "all",
        step_graph: Path | None = None,
    ) -> None:
        super().__init__(contract)
        self.device = resolve_device(device)  # "cpu" | "cuda" | "tensorrt"
        if cuda_graph and self.device != "cuda":
            raise InputError(f"CUDA graphs need device 'cuda', not {self.device!r}")
        self.cuda_graph = cuda_graph
        options = session_options(threads, optimized_model, optimization)
        providers = provider_list(self.device, cuda_graph, trt_cache_dir, trt_fp16)
        self.session = self._open_session(model_path, options, providers)
        check_interface(self.session, contract, model_path)
        # A one-token graph beside the sequence graph (exporters/step_graph.py): the bound stepper
        # runs steps on it and prefill on the sequence graph; both read and write the same state.
        self.step_session: Any = None
        self._open_wide: Callable[[], Any] | None = None  # the step for many streams, unopened
        self._wide_session: Any = None
        if step_graph is not None:
            # unless told a count, a step small enough for one core runs on one (step_threads)
            narrow = threads is None and self.device == "cpu" and step_threads(step_graph) == 1
            step_options = session_options(1, optimized_model, optimization) if narrow else options
            self.step_session = self._open_session(step_graph, step_options, providers)
            check_interface(self.step_session, contract, step_graph)
            if narrow:
                self._open_wide = partial(self._open_session, step_graph, options, providers)
        self.name = f"ort-{self.device}"
        # With CUDA graphs on, ORT would capture any run; calls with varying shapes (plain runs,
        # prefill) must opt out with gpu_graph_id -1. Without graphs, pass no RunOptions at all.
        self.uncaptured: Any = None
        self._graph_ids = iter(range(1, 1 << 30))
        if cuda_graph:
            self.uncaptured = ort().RunOptions()
            self.uncaptured.add_run_config_entry("gpu_graph_id", "-1")
        self._outputs = [o.name for o in self.session.get_outputs()]

    @staticmethod
    def _open_session(path: str | Path, options: Any, providers: Any) -> Any:
        try:
            return ort().InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT's own reason (bad protobuf, external data, ops), one line
            reason = " ".join(str(exc).split())[:500]
            raise InputError(f"ONNX Runtime cannot load {path}: {reason}") from None

    def graph_run_options(self) -> Any:
        """RunOptions with a CUDA graph id of its own: each fixed-shape binding gets its own graph."""
        options = ort().RunOptions()
        options.add_run_config_entry("gpu_graph_id", str(next(self._graph_ids)))
        return options

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self._outputs, dict(feeds), self.uncaptured)
        return dict(zip(self._outputs, values, strict=True))

    def step_session_for(self, batch: int) -> Any:
        """The session a stepper of `batch` streams steps on: the step session, except where it
        runs on one thread by the L2 rule and `batch` exceeds ONE_THREAD_STREAMS; those steps do
        real arithmetic, and a second session of the same graph on the default threads (opened on
        first use) runs them."""
        if self._open_wide is None or batch <= ONE_THREAD_STREAMS:
            return self.step_session
        if self._wide_session is None:
            self._wide_session = self._open_wide()
        return self._wide_session

    def stepper(self, batch: int) -> BoundStepper | GrowingStepper | HostStepper:
        """IO-bound ping-pong buffers; a growing state (a KV cache), which changes shape every
        call, in host buffers sized once for its max_length (on CUDA: through the host, ONNX
        Runtime allocating each call's outputs)."""
        if self.contract.growing:
            return GrowingStepper(self, batch) if self.device == "cpu" else HostStepper(self, batch)
        return BoundStepper(self, batch)

    def prepared(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        if self.cuda_graph:
            return self._graph_call(feeds)
        session, frozen = self.session, dict(feeds)  # no per-call validation, as a tuned app would
        return lambda: session.run(None, frozen)

    def _graph_call(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """CUDA graphs: inputs and outputs at fixed device addresses, new inputs copied in place."""
        value = ort().OrtValue
        binding = self.session.io_binding()
        inputs = {n: value.ortvalue_from_numpy(a, "cuda", 0) for n, a in feeds.items()}
        for n, v in inputs.items():
            binding.bind_ortvalue_input(n, v)
        sizes = {}  # the size of every symbolic dim, read from the feeds
        for t in self.contract.inputs:
            for axis, dim in enumerate(t.shape):
                if isinstance(dim, str):
                    sizes[dim] = feeds[t.name].shape[axis]
        outs = []
        for t in self.contract.outputs:
            out = value.ortvalue_from_shape_and_type(
                t.concrete(sizes), np.dtype(t.dtype), "cuda", 0
            )
            binding.bind_ortvalue_output(t.name, out)
            outs.append(out)
        options = self.graph_run_options()  # this binding's own graph

        def run() -> Any:
            for n, v in inputs.items():
                v.update_inplace(feeds[n])
            self.session.run_with_iobinding(binding, options)
            return outs[0].numpy()

        return run


def _open(
    device: str,
    cuda_graph: bool,
    bundle: Path,
    manifest: Manifest | Mapping[str, Any],
    options: Any,
) -> OrtBackend:
    manifest = Manifest.of(manifest)
    trt_cache = None
    if device == "tensorrt":  # the TensorRT EP keeps its engines between sessions
        trt_cache = options.trt_cache_dir or cache_dir(bundle) / "trt"
        trt_cache.mkdir(parents=True, exist_ok=True)
    return OrtBackend(
        Path(bundle) / manifest.graph,
        manifest.contract,
        device,
        options.threads,
        options.optimized_model,
        cuda_graph,
        trt_cache,
        optimization=manifest.optimization,
        step_graph=_step_graph(Bundle(Path(bundle), manifest), options.step_graph),
    )


def _step_graph(read: Bundle, choice: bool | None) -> Path | None:
    """The graph steps run on: export's choice (None), the bundle's step graph (True) or none."""
    if choice is None:
        return read.step_graph
    return read.any_step_graph if choice else None


def step_graph_of(
    bundle: Path, manifest: Manifest | Mapping[str, Any], used_only: bool = True
) -> Path | None:
    """The bundle's one-token step graph: the one the runtime steps on (export found it faster),
    or with `used_only=False` whichever the bundle has."""
    read = Bundle(Path(bundle), Manifest.of(manifest))
    return read.step_graph if used_only else read.any_step_graph


def _provider_reason(device: str, bundle: Path, manifest: Manifest | None) -> str | None:
    return missing_provider(device)


for _name, _device, _graph, _rank, _summary in (
    ("ort-cpu", "cpu", False, 10, "ONNX Runtime on the CPU"),
    ("ort-cuda", "cuda", False, 30, "ONNX Runtime on an NVIDIA GPU (CUDA execution provider)"),
    (
        "ort-cuda-graph",
        "cuda",
        True,
        31,
        "ONNX Runtime CUDA with the step replayed as a CUDA graph",
    ),
    ("ort-trt", "tensorrt", False, 32, "ONNX Runtime with its TensorRT execution provider"),
):
    registry.register(
        registry.BackendEntry(
            name=_name,
            device="cpu" if _device == "cpu" else "cuda",
            summary=_summary,
            unavailable=partial(_provider_reason, _device),
            open=partial(_open, _device, _graph),
            model_bytes=registry.graph_bytes,
            rank=_rank,
            runs_variants=True,
        )
    )
