"""Which reduced-precision recipe suits a graph, and how to build it.

A recipe is picked from the graph itself, so user modules get one too:

- a graph whose largest weight is tiny (linear and logistic regression): int8 does not pay, because
  the quantize and dequantize steps cost more than the matmul they replace and the file is already
  a few hundred bytes; nothing is written;
- LSTM: dynamic int8, per-channel weights (ONNX Runtime's DynamicQuantizeLSTM);
- GRU and RNN: dynamic int8 of what ONNX Runtime can quantize (the MatMuls around the cell); the
  GRU/RNN op itself stays in float and the record says how much of the weight that is;
- convolutions: static QDQ int8, per-channel weights, activations calibrated on real data;
- anything else with MatMul/Gemm weights: dynamic int8.

fp16 keeps inputs, outputs and state in fp32 at the graph boundary (keep_io_types) and is meant for
GPUs; on a CPU it is measured and reported as slower where it is.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputError

WEIGHTED_OPS = ("Conv", "MatMul", "Gemm", "LSTM", "GRU", "RNN")
FLOAT_UNDER_DYNAMIC = ("GRU", "RNN")  # ONNX Runtime has no dynamic int8 kernel for these
MIN_WEIGHT_ELEMENTS = 256  # below this largest weight, int8 cannot pay (linear/logistic: 2)
MODES = ("dynamic", "static")


class DoesNotPay(Exception):
    """Quantizing this graph would not help; the message says why. Nothing is written."""


@dataclass(frozen=True)
class Recipe:
    precision: str  # "int8" | "fp16"
    mode: str  # "dynamic" | "static" (int8) | "cast" (fp16)
    per_channel: bool = True
    reduce_range: bool = False
    exclude: tuple[str, ...] = ()  # node names kept in float
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exclude": list(self.exclude), "tool": "onnxruntime"}


@dataclass(frozen=True)
class WeightedNode:
    name: str
    op: str
    weight_elements: int


def weighted_nodes(model: Any) -> list[WeightedNode]:
    """Nodes that carry weights (initializers), in graph order."""
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type in WEIGHTED_OPS:
            elements = sum(sizes.get(name, 0) for name in node.input[1:])
            if elements:
                found.append(WeightedNode(node.name, node.op_type, elements))
    return found


def choose(
    model: Any,
    precision: str,
    mode: str | None = None,
    per_channel: bool = True,
    reduce_range: bool = False,
) -> Recipe:
    """The recipe for `model` (an onnx.ModelProto); `mode` overrides the int8 choice."""
    nodes = weighted_nodes(model)
    largest = max((n.weight_elements for n in nodes), default=0)
    if largest < MIN_WEIGHT_ELEMENTS:
        raise DoesNotPay(
            f"{precision} does not pay for this model: its largest weight has {largest} elements "
            f"(fewer than {MIN_WEIGHT_ELEMENTS}), so quantizing saves almost no bytes and the extra "
            "conversions cost more than the arithmetic they replace; nothing written"
        )
    ops = Counter(n.op for n in nodes)
    if precision == "fp16":
        return Recipe("fp16", "cast", why="fp16 weights and arithmetic, fp32 at the boundary")
    if mode is not None and mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode is None:
        mode = "static" if ops["Conv"] else "dynamic"
        why = {
            "static": "convolutions: static QDQ int8, activations calibrated on real data",
            "dynamic": "recurrent/matmul weights: dynamic int8 (activations quantized per call)",
        }[mode]
    else:
        why = f"{mode} int8, as asked"
    return Recipe("int8", mode, per_channel, reduce_range, why=why)


def _stays_float(node: WeightedNode, recipe: Recipe) -> bool:
    if node.name in recipe.exclude:
        return True
    if recipe.precision != "int8":
        return False
    unsupported = (
        FLOAT_UNDER_DYNAMIC if recipe.mode == "dynamic" else ("LSTM", *FLOAT_UNDER_DYNAMIC)
    )
    return node.op in unsupported


def float_share(model: Any, recipe: Recipe) -> tuple[list[str], float]:
    """Weighted nodes the recipe leaves in float ("OP name"), and their share of the weights."""
    nodes = weighted_nodes(model)
    total = sum(n.weight_elements for n in nodes) or 1
    left = [n for n in nodes if _stays_float(n, recipe)]
    return [f"{n.op} {n.name}" for n in left], sum(n.weight_elements for n in left) / total


def quantized_nodes(model: Any, recipe: Recipe) -> list[str]:
    """Weighted nodes the recipe converts ("OP name")."""
    return [f"{n.op} {n.name}" for n in weighted_nodes(model) if not _stays_float(n, recipe)]


def excluding(recipe: Recipe, names: list[str]) -> Recipe:
    return replace(
        recipe, exclude=tuple(names), why=recipe.why + f"; {len(names)} node(s) in float"
    )


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizer logs advice (pre-process first, etc.) at WARNING on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def build(
    recipe: Recipe,
    parent: Path,
    out: Path,
    calibration: list[dict[str, np.ndarray]] | None = None,
) -> None:
    """Write the derived graph to `out` (a temporary path; the caller renames it)."""
    import onnx

    if recipe.precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        half = convert_float_to_float16(
            onnx.load(str(parent)), keep_io_types=True, node_block_list=list(recipe.exclude)
        )
        _strip_and_save(half, out)
        return
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    with _quiet_quantizer():
        if recipe.mode == "dynamic":
            quantize_dynamic(
                parent,
                out,
                per_channel=recipe.per_channel,
                reduce_range=recipe.reduce_range,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(recipe.exclude),
            )
        else:
            if not calibration:
                raise InputError(
                    "static int8 needs calibration data, and this bundle's data is not available: "
                    "pass --calibration FILE.npz (arrays named after the inputs, batch first)"
                )
            quantize_static(
                parent,
                out,
                _Reader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=recipe.per_channel,
                reduce_range=recipe.reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(recipe.exclude),
            )
    _strip_and_save(onnx.load(str(out)), out)


def prepare(parent: Path, out: Path) -> tuple[Path, str]:
    """The graph recipes are built from: shapes inferred and constants folded (ONNX Runtime's
    quant_pre_process). An exporter may feed an LSTM weights it slices and concatenates from
    initializers; the quantizer only sees weights that are initializers, so fold first. Returns the
    path and a note; a graph the pre-processor cannot handle is used as it is."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with _quiet_quantizer():
            quant_pre_process(str(parent), str(out))
        return out, "shapes inferred, constants folded (quant_pre_process)"
    except Exception as exc:  # the pre-processor's own failure: quantize the graph as exported
        shutil.copy2(parent, out)
        return out, f"not pre-processed ({type(exc).__name__}); quantized as exported"


def _strip_and_save(model: Any, out: Path) -> None:
    """Drop per-node metadata (the exporter's stack traces): a tenth of a small file, of no use."""
    import onnx

    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(model, str(out))


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self._batches

    def set_range(self, start_index: int, end_index: int) -> None:
        """Part of the protocol; calibration here reads every batch once."""
