"""Tensor element types under every name the tools around a bundle give them (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    """One tensor element type under each name the tools around a bundle give it."""

    numpy: str  # the manifest's name, numpy's: "float32"
    onnx: str  # ONNX Runtime's type string: "tensor(float)"
    v2: str  # the KServe v2 / Triton protocol datatype: "FP32"
    triton: str  # Triton's model configuration type: "TYPE_FP32"


DTYPES: dict[str, DType] = {
    d.numpy: d
    for d in (
        DType("float32", "tensor(float)", "FP32", "TYPE_FP32"),
        DType("float16", "tensor(float16)", "FP16", "TYPE_FP16"),
        DType("float64", "tensor(double)", "FP64", "TYPE_FP64"),
        DType("int64", "tensor(int64)", "INT64", "TYPE_INT64"),
        DType("int32", "tensor(int32)", "INT32", "TYPE_INT32"),
        DType("int16", "tensor(int16)", "INT16", "TYPE_INT16"),
        DType("int8", "tensor(int8)", "INT8", "TYPE_INT8"),
        DType("uint8", "tensor(uint8)", "UINT8", "TYPE_UINT8"),
        DType("bool", "tensor(bool)", "BOOL", "TYPE_BOOL"),
    )
}
