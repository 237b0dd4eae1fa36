"""ONNX Runtime backend: device -> execution providers, session options, plain and bound calls."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.errors import InputError
from edgekit.iospec import IOContract
from edgekit.runtimes.base import Backend

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_PREFERENCE = ("tensorrt", "cuda", "cpu")  # what `auto` tries, best first


def ort() -> Any:
    return require("onnxruntime", "running bundles")


def resolve_device(device: str) -> str:
    """`auto` -> the best available device; a requested device that is missing is an error."""
    available = ort().get_available_providers()
    if device == "auto":
        return next(d for d in _PREFERENCE if PROVIDERS[d][0] in available)
    if device not in PROVIDERS:
        raise InputError(f"unknown device {device!r}; known devices: auto, {', '.join(PROVIDERS)}")
    if PROVIDERS[device][0] not in available:
        raise InputError(
            f"device {device!r} needs {PROVIDERS[device][0]}, which this onnxruntime does not "
            f"have; available providers: {', '.join(available)} (for GPUs: pip install 'edgekit[gpu]')"
        )
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


def session_options(threads: int | None = None, optimized_model: Path | None = None) -> Any:
    so = ort().SessionOptions()
    so.graph_optimization_level = ort().GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: shape-inference notes are not the user's business
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if optimized_model is not None:
        so.optimized_model_filepath = str(optimized_model)
    return so


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
    ) -> None:
        super().__init__(contract)
        self.device = resolve_device(device)
        if cuda_graph and self.device != "cuda":
            raise InputError(f"CUDA graphs need device 'cuda', not {self.device!r}")
        self.cuda_graph = cuda_graph
        self.session = ort().InferenceSession(
            str(model_path),
            sess_options=session_options(threads, optimized_model),
            providers=provider_list(self.device, cuda_graph, trt_cache_dir, trt_fp16),
        )
        self.name = f"ort-{self.device}"
        # With CUDA graphs on, ORT would capture any run; calls with varying shapes (plain runs,
        # prefill) must opt out with gpu_graph_id -1. Without graphs, pass no RunOptions at all.
        self.uncaptured: Any = None
        self._graph_ids = iter(range(1, 1 << 30))
        if cuda_graph:
            self.uncaptured = ort().RunOptions()
            self.uncaptured.add_run_config_entry("gpu_graph_id", "-1")
        self._outputs = [o.name for o in self.session.get_outputs()]

    def graph_run_options(self) -> Any:
        """RunOptions with a CUDA graph id of its own: each fixed-shape binding gets its own graph."""
        options = ort().RunOptions()
        options.add_run_config_entry("gpu_graph_id", str(next(self._graph_ids)))
        return options

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self._outputs, dict(feeds), self.uncaptured)
        return dict(zip(self._outputs, values, strict=True))


class BoundStepper:
    """Allocation-free recurrent stepping with IO binding and ping-pong state buffers.

    Two state buffer sets A and B exist for a fixed batch size. Call k binds one set as `state_in.*`
    and the other as `state_out.*`, then the roles swap, so step k's outputs are step k+1's inputs
    with no copy, no per-step allocation and no dict building. On CPU the buffers are numpy arrays
    wrapped (not copied) by OrtValues; on CUDA they are device OrtValues, so state never leaves the
    GPU and only the token (in) and the logits row (out) cross to the host.
    """

    def __init__(self, backend: OrtBackend, batch: int) -> None:
        contract = backend.contract
        if not contract.state or contract.token_input is None:
            raise InputError("stepping needs a recurrent bundle (state inputs and a token input)")
        self.session = backend.session
        self.uncaptured = backend.uncaptured
        self.batch = batch
        self.pairs = [(p.input, p.output) for p in contract.state]
        self.token_name = contract.token_input
        on_gpu = backend.device != "cpu"
        logits_spec = contract.outputs[0]
        self.tokens = np.zeros((batch, 1), dtype=np.int64)  # written in place before each step
        self.logits = np.zeros(logits_spec.concrete({"batch": batch, "time": 1}), np.float32)
        self.graph = backend.cuda_graph
        if (
            self.graph
        ):  # a CUDA graph replays fixed device addresses: token and logits live there too
            value = ort().OrtValue.ortvalue_from_shape_and_type
            self._token_value = value(self.tokens.shape, np.int64, "cuda", 0)
            self._logits_value = value(self.logits.shape, np.float32, "cuda", 0)
        else:
            self._token_value = ort().OrtValue.ortvalue_from_numpy(self.tokens)
            self._logits_value = ort().OrtValue.ortvalue_from_numpy(self.logits)
        # One captured graph per ping-pong parity (each records its own buffer addresses). Without
        # graphs no RunOptions are passed at all: on CPU, passing one costs ~25 us per call
        # (measured with onnxruntime 1.32 on a 2x256 LSTM step of ~50 us).
        self.run_options: list[Any] = [None, None]
        if self.graph:
            self.run_options = [backend.graph_run_options(), backend.graph_run_options()]
        self.buffers: list[dict[str, Any]] = []
        for _ in range(2):
            buf = {}
            for name, _ in self.pairs:
                shape = contract.spec(name).concrete({"batch": batch})
                if on_gpu:
                    buf[name] = ort().OrtValue.ortvalue_from_shape_and_type(
                        shape, np.float32, "cuda", 0
                    )
                else:
                    buf[name] = ort().OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32))
            self.buffers.append(buf)
        self.bindings = [self._binding(k) for k in range(2)]
        self.current = 0  # self.buffers[current] holds the live state
        self.reset()

    def _binding(self, k: int) -> Any:
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.token_name, self._token_value)
        binding.bind_ortvalue_output(self.session.get_outputs()[0].name, self._logits_value)
        for name_in, name_out in self.pairs:
            binding.bind_ortvalue_input(name_in, self.buffers[k][name_in])
            binding.bind_ortvalue_output(name_out, self.buffers[1 - k][name_in])
        return binding

    def step(self) -> np.ndarray:
        """Advance every stream by the tokens in `self.tokens`; return logits (batch, V) (a view)."""
        if self.graph:
            self._token_value.update_inplace(self.tokens)
        if self.graph:
            self.session.run_with_iobinding(
                self.bindings[self.current], self.run_options[self.current]
            )
        else:
            self.session.run_with_iobinding(self.bindings[self.current])
        if self.graph:
            self.logits[...] = self._logits_value.numpy()
        self.current ^= 1
        return self.logits[:, 0]

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        """Feed (batch, T) tokens in one call; return the last step's logits (batch, V)."""
        if tokens.shape[0] != self.batch or tokens.ndim != 2 or tokens.shape[1] < 1:
            raise InputError(f"prefill tokens must be ({self.batch}, T >= 1), got {tokens.shape}")
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.token_name, np.ascontiguousarray(tokens, dtype=np.int64))
        logits_name = self.session.get_outputs()[0].name
        binding.bind_output(logits_name, "cpu")
        live, spare = self.buffers[self.current], self.buffers[1 - self.current]
        for name_in, name_out in self.pairs:
            binding.bind_ortvalue_input(name_in, live[name_in])
            binding.bind_ortvalue_output(name_out, spare[name_in])
        self.session.run_with_iobinding(binding, self.uncaptured)
        self.current ^= 1
        last = binding.get_outputs()[0].numpy()[:, -1]  # (batch, V)
        self.logits[:, 0] = last
        return self.logits[:, 0]

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: value.numpy().copy() for name, value in self.buffers[self.current].items()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        live = self.buffers[self.current]
        for name, value in live.items():
            if name not in state:
                raise InputError(f"state is missing {name!r}; expected {sorted(live)}")
            arr = np.ascontiguousarray(state[name], dtype=np.float32)
            if tuple(arr.shape) != tuple(value.shape()):
                raise InputError(
                    f"state {name}: shape {arr.shape}, expected {tuple(value.shape())}"
                )
            value.update_inplace(arr)

    def reset(self) -> None:
        self.set_state(
            {n: np.zeros(v.shape(), np.float32) for n, v in self.buffers[self.current].items()}
        )
