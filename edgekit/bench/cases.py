"""What bench times: one callable per (backend, case), built for the bundle's task.

Each backend is set up the way a careful user would run it: ONNX Runtime with IO binding for the
bound step path, torch on preallocated tensors under inference_mode (no numpy round trips), so the
speedup column compares the runtimes, not glue code. On CUDA every timed call ends synchronised.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputError
from edgekit.iospec import IOContract

BACKENDS = (
    "torch",
    "torch-cuda",
    "torch-cuda-graph",
    "ort-cpu",
    "ort-cuda",
    "ort-cuda-graph",
    "ort-trt",
    "trt",
)
ORT_DEVICE = {"ort-cpu": "cpu", "ort-cuda": "cuda", "ort-cuda-graph": "cuda", "ort-trt": "tensorrt"}
TORCH_DEVICE = {"torch": "cpu", "torch-cuda": "cuda", "torch-cuda-graph": "cuda"}
PROVIDER = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
PREFILL_LENGTHS = (16, 128, 512)


@dataclass
class Case:
    backend: str
    name: str  # e.g. "batch 8", "step bound B=1", "prefill T=128"
    batch: int
    items_per_call: int  # images, rows or tokens produced per call
    call: Callable[[], Any]


def parse_backends(text: str | None) -> list[str]:
    if text is None:
        return list(BACKENDS)
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or not names:
        raise InputError(
            f"unknown backend(s) {unknown or [text]}; known backends: {', '.join(BACKENDS)}"
        )
    return names


def unavailable_reason(backend: str, manifest: dict[str, Any], bundle: Path) -> str | None:
    """Why `backend` cannot run here, or None if it can."""
    if backend in TORCH_DEVICE:
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed (pip install 'edgekit[train]')"
        ckpt = manifest.get("source", {}).get("checkpoint")
        if not ckpt or not Path(ckpt).is_dir():
            return f"the source checkpoint is not available ({ckpt})"
        if TORCH_DEVICE[backend] == "cuda":
            import torch

            if not torch.cuda.is_available():
                return "torch sees no CUDA GPU"
        return None
    if backend == "trt":
        from edgekit.runtimes.tensorrt import unavailable_reason as trt_reason

        return trt_reason(bundle, manifest)
    import onnxruntime as ort

    provider = PROVIDER[ORT_DEVICE[backend]]
    if provider not in ort.get_available_providers():
        return (
            f"{provider} is not available in this onnxruntime (pip install 'edgekit[gpu]' on a GPU)"
        )
    return None


def make_backend(backend: str, bundle: Path, manifest: dict[str, Any], threads: int | None) -> Any:
    """A runnable handle: OrtBackend, TorchModel or the native TensorRT backend."""
    contract = IOContract.from_manifest(manifest)
    if backend in ORT_DEVICE:
        from edgekit.runtimes.onnxruntime import OrtBackend

        trt_cache = bundle / ".cache" / "trt" if backend == "ort-trt" else None
        if trt_cache is not None:
            trt_cache.mkdir(parents=True, exist_ok=True)
        return OrtBackend(
            bundle / manifest["graph"],
            contract,
            ORT_DEVICE[backend],
            threads,
            cuda_graph=backend == "ort-cuda-graph",
            trt_cache_dir=trt_cache,
        )
    if backend == "trt":
        from edgekit.runtimes.tensorrt import TrtBackend

        return TrtBackend.from_bundle(bundle, manifest)
    return TorchModel(manifest, threads, TORCH_DEVICE[backend], graph=backend == "torch-cuda-graph")


class TorchModel:
    """The source checkpoint in torch (eager, or replayed CUDA graphs) on torch tensors directly."""

    def __init__(
        self,
        manifest: dict[str, Any],
        threads: int | None,
        device: str = "cpu",
        graph: bool = False,
    ) -> None:
        import torch

        from edgekit.runtimes.torch_ref import TorchBackend

        if threads is not None:
            torch.set_num_threads(threads)
        self.torch, self.device, self.graph = torch, device, graph
        ref = TorchBackend.from_checkpoint(manifest["source"]["checkpoint"], device=device)
        self.module = ref.module
        self.contract = ref.contract

    def _finish(self, work: Callable[[], Any]) -> Callable[[], Any]:
        """On CUDA: optionally capture `work` in a CUDA graph; always synchronise after a call."""
        torch = self.torch
        if self.device == "cpu":
            return work
        if self.graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm up outside the capture, as torch requires
                for _ in range(3):
                    work()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                work()
            work = graph.replay

        def synced() -> None:
            work()
            torch.cuda.synchronize()

        return synced

    def call(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        torch = self.torch
        args = [torch.from_numpy(feeds[n]).to(self.device) for n in self.contract.input_names]
        module = self.module

        def run() -> Any:
            with torch.inference_mode():
                return module(*args)

        return self._finish(run)

    def stepper(self, streams: int) -> Callable[[], Any]:
        torch = self.torch
        state = [
            torch.zeros(s.concrete({"batch": streams}), device=self.device)
            for s in self.contract.inputs[1:]
        ]
        tok = torch.zeros(streams, 1, dtype=torch.int64, device=self.device)
        module = self.module

        def step() -> None:
            with torch.inference_mode():
                logits, *new = module(tok, *state)
                for old, fresh in zip(
                    state, new, strict=True
                ):  # in place: fixed addresses for graphs
                    old.copy_(fresh)
                tok[:, 0] = logits[:, -1].argmax(-1)

        return self._finish(step)


def build_cases(
    backend: str,
    handle: Any,
    contract: IOContract,
    task: str,
    batches: list[int],
) -> list[Case]:
    rng = np.random.default_rng(0)
    cases: list[Case] = []
    is_torch = backend in TORCH_DEVICE
    if task != "generate":
        for b in batches:
            feeds = contract.example(b, 1, rng)
            call = handle.call(feeds) if is_torch else _ort_call(handle, feeds)
            cases.append(Case(backend, f"batch {b}", b, b, call))
            if backend == "ort-cuda":
                cases += _ort_transfer_split(handle, feeds, b)
        return cases
    for b in batches:
        if is_torch:
            cases.append(Case(backend, f"step B={b}", b, b, handle.stepper(b)))
        else:
            cases.append(Case(backend, f"step bound B={b}", b, b, _bound_step(handle, b)))
            cases.append(Case(backend, f"step host B={b}", b, b, _host_step(handle, b)))
    for t in PREFILL_LENGTHS:
        feeds = {
            **contract.zero_state(1),
            "tokens": rng.integers(0, max(contract.vocab_size, 1), (1, t)),
        }
        call = handle.call(feeds) if is_torch else _ort_call(handle, feeds)
        cases.append(Case(backend, f"prefill T={t}", 1, t, call))
    return cases


def _ort_call(handle: Any, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    if getattr(handle, "cuda_graph", False):
        return _ort_graph_call(handle, feeds)
    if hasattr(handle, "session"):  # OrtBackend: skip per-call validation, as a tuned app would
        session, frozen = handle.session, dict(feeds)
        return lambda: session.run(None, frozen)
    return lambda: handle.run(feeds)


def _ort_graph_call(handle: Any, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    """ORT CUDA graphs: inputs and outputs at fixed device addresses, new inputs copied in place."""
    import onnxruntime as ort

    session = handle.session
    binding = session.io_binding()
    values = {n: ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0) for n, a in feeds.items()}
    for n, v in values.items():
        binding.bind_ortvalue_input(n, v)
    sizes = {"batch": next(iter(feeds.values())).shape[0]}
    if "tokens" in feeds:
        sizes["time"] = feeds["tokens"].shape[1]
    outs = []
    for t in handle.contract.outputs:
        value = ort.OrtValue.ortvalue_from_shape_and_type(
            t.concrete(sizes), np.dtype(t.dtype), "cuda", 0
        )
        binding.bind_ortvalue_output(t.name, value)
        outs.append(value)

    options = handle.graph_run_options()  # this binding's own graph

    def run() -> Any:
        for n, v in values.items():
            v.update_inplace(feeds[n])
        session.run_with_iobinding(binding, options)
        return outs[0].numpy()

    return run


def _ort_transfer_split(handle: Any, feeds: dict[str, np.ndarray], batch: int) -> list[Case]:
    """H2D, compute and D2H of one ONNX Runtime CUDA call, timed apart with device-bound values."""
    import onnxruntime as ort

    ((name, host),) = feeds.items()
    out_name = handle.contract.output_names[0]
    device_in = ort.OrtValue.ortvalue_from_numpy(host, "cuda", 0)
    binding = handle.session.io_binding()
    binding.bind_ortvalue_input(name, device_in)
    binding.bind_output(out_name, "cuda")
    handle.session.run_with_iobinding(binding)
    device_out = binding.get_outputs()[0]
    binding.bind_ortvalue_output(out_name, device_out)

    def compute() -> None:
        handle.session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return [
        Case(
            "ort-cuda", f"batch {batch} h2d", batch, batch, lambda: device_in.update_inplace(host)
        ),
        Case("ort-cuda", f"batch {batch} compute", batch, batch, compute),
        Case("ort-cuda", f"batch {batch} d2h", batch, batch, device_out.numpy),
    ]


def _bound_step(handle: Any, streams: int) -> Callable[[], Any]:
    """The Generator's path: IO binding, ping-pong state, greedy token fed back."""
    from edgekit.runtimes.onnxruntime import BoundStepper

    stepper: Any = (
        BoundStepper(handle, streams) if hasattr(handle, "session") else handle.stepper(streams)
    )

    def step() -> None:
        stepper.tokens[:, 0] = stepper.logits[:, 0].argmax(-1)
        stepper.step()

    return step


def _host_step(handle: Any, streams: int) -> Callable[[], Any]:
    """State through the host: a feeds dict and numpy state in and out on every step."""
    contract: IOContract = handle.contract
    state = contract.zero_state(streams)
    tokens = np.zeros((streams, 1), np.int64)
    pairs = [(p.input, p.output) for p in contract.state]
    session = getattr(handle, "session", None)

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if session is None:  # the native TensorRT backend
            return dict(handle.run(feeds))
        return dict(zip(contract.output_names, session.run(None, feeds), strict=True))

    def step() -> None:
        nonlocal state
        named = run({"tokens": tokens, **state})
        state = {i: named[o] for i, o in pairs}
        tokens[:, 0] = named["logits"][:, -1].argmax(-1)

    return step
