"""A thin layer over cuda-python's runtime API: device info, memory, streams, graphs.

Imported only by the TensorRT backend and builder; `cuda-python` comes with `edgekit-ml[gpu]`.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.errors import InputError


def cudart() -> Any:
    try:
        return require("cuda.bindings.runtime", "the TensorRT backend")
    except ImportError:  # cuda-python < 12.6 layout
        return require("cuda.cudart", "the TensorRT backend")


def check(result: Any) -> Any:
    """cuda-python returns (err, *values): raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else tuple(values) or None


def gpu_info(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of `device`."""
    rt = cudart()
    try:
        props = check(rt.cudaGetDeviceProperties(device))
    except RuntimeError as exc:
        raise InputError(f"no usable CUDA GPU ({exc})") from None
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.strip("\x00 "), f"{props.major}.{props.minor}"


class DeviceBuffer:
    """cudaMalloc'd memory, freed with the object."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(check(cudart().cudaMalloc(self.nbytes)))

    def __del__(self) -> None:
        if getattr(self, "ptr", 0):
            cudart().cudaFree(self.ptr)
            self.ptr = 0


class PinnedArray:
    """A numpy array over page-locked host memory (required for copies inside a CUDA graph)."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        dt = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dt.itemsize, 1)
        self.ptr = int(check(cudart().cudaMallocHost(nbytes)))
        raw = (ctypes.c_byte * nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=dt, count=int(np.prod(shape))).reshape(shape)
        self.array[...] = 0

    def __del__(self) -> None:
        if getattr(self, "ptr", 0):
            cudart().cudaFreeHost(self.ptr)
            self.ptr = 0


def memcpy_htod(dst: int, src: np.ndarray, stream: Any) -> None:
    rt = cudart()
    check(
        rt.cudaMemcpyAsync(
            dst, src.ctypes.data, src.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream
        )
    )


def memcpy_dtoh(dst: np.ndarray, src: int, stream: Any) -> None:
    rt = cudart()
    check(
        rt.cudaMemcpyAsync(
            dst.ctypes.data, src, dst.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream
        )
    )


def memset(dst: int, nbytes: int, stream: Any) -> None:
    check(cudart().cudaMemsetAsync(dst, 0, nbytes, stream))


def new_stream() -> Any:
    return check(cudart().cudaStreamCreate())


def synchronize(stream: Any) -> None:
    check(cudart().cudaStreamSynchronize(stream))


class CapturedGraph:
    """Record what `work()` enqueues on `stream` into a CUDA graph; `launch()` replays it."""

    def __init__(self, stream: Any, work: Any) -> None:
        rt = cudart()
        self.stream = stream
        check(
            rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal)
        )
        try:
            work()
        finally:
            self.graph = check(rt.cudaStreamEndCapture(stream))
        self.exec = check(rt.cudaGraphInstantiate(self.graph, 0))

    def launch(self) -> None:
        check(cudart().cudaGraphLaunch(self.exec, self.stream))
