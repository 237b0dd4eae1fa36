"""Triton Inference Server model configurations for a bundle, as Triton's JSON and as config.pbtxt
(torch- and onnx-free: `edgekit serve` answers `GET .../config` with them; the repository writer,
exporters/triton_repository.py, writes them with the graph).

- Stateless bundles whose every input and output has the batch axis first get
  `max_batch_size: N` (dims without the batch axis) and `dynamic_batching`; any other layout gets
  `max_batch_size: 0` and full dims.
- Recurrent bundles get `sequence_batching` with implicit state: Triton keeps each sequence's
  state_in/state_out pairs (zero initial state) and clients send tokens only, as with
  `edgekit serve`. Triton needs batch first on every tensor when `max_batch_size > 0`, and a
  bundle's state is (layers, batch, hidden): by default these configs use `max_batch_size: 0` with
  batch fixed at 1 (one stream per call, the graph unchanged); with batched sequences they describe
  the batch-first copy of the graph (every tensor batch first, batch dims left to Triton).
- A bundle with TensorRT engines also gets NAME_trt (platform tensorrt_plan), one plan per
  compute capability through `cc_model_filenames`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from edgekit.bundle.dtypes import DTYPES
from edgekit.bundle.io import BATCH, IOContract, TensorSpec
from edgekit.errors import InputError

TRITON_TYPES = {name: d.triton for name, d in DTYPES.items()}  # numpy name -> Triton's
IDLE_US = 60_000_000  # a sequence idle for a minute is dropped, as `edgekit serve` does


def _dims(
    spec: TensorSpec, batch: str | None, drop_batch: bool, fixed: dict[str, int]
) -> list[int]:
    """Triton's dims of `spec`: its fixed sizes, -1 for a dynamic axis unless `fixed` sizes it."""
    dims = []
    for d in spec.shape:
        if d == batch and drop_batch:
            continue
        dims.append(d if isinstance(d, int) else fixed.get(d, -1))
    return dims


def _static(contract: IOContract) -> dict[str, int]:
    """The named axes the graph holds at one size (a step-only graph's time: 1)."""
    return {a.name: a.min for a in contract.axes.values() if a.fixed}


def _tensor(spec: TensorSpec, dims: list[int]) -> dict[str, Any]:
    if spec.dtype not in TRITON_TYPES:
        raise InputError(f"{spec.name}: dtype {spec.dtype} has no Triton type")
    return {"name": spec.name, "data_type": TRITON_TYPES[spec.dtype], "dims": dims}


def triton_config(
    name: str,
    contract: IOContract,
    platform: str,
    max_batch: int,
    renamed: dict[str, str] | None = None,
    batch_sequences: bool = False,
) -> tuple[dict[str, Any], str]:
    """(the model configuration as Triton's JSON has it, how batching was set up, in words).
    `renamed`: state outputs as the graph Triton gets names them; `batch_sequences`: a recurrent
    bundle's graph was made batch first (triton_graph.py), so Triton may batch its sequences."""
    renamed = renamed or {}
    batch = contract.role_axis(BATCH)
    static = _static(contract)
    config: dict[str, Any] = {"name": name, "platform": platform}
    if contract.state and batch_sequences:
        spec = partial(batch_first_spec, contract=contract)
        config["max_batch_size"] = max_batch
        config |= _recurrent(contract, renamed, spec, drop_batch=True)
        config["sequence_batching"]["oldest"] = {
            "max_candidate_sequences": max_batch,
            "preferred_batch_size": [max_batch],
            "max_queue_delay_microseconds": 0,
        }
        how = f"max_batch_size {max_batch}, sequence_batching (oldest) with implicit state"
    elif contract.state:
        config["max_batch_size"] = 0
        config |= _recurrent(contract, renamed, lambda t: t, drop_batch=False)
        how = "max_batch_size 0, sequence_batching with implicit state (batch 1 per sequence)"
    else:
        tensors = [*contract.inputs, *contract.outputs]
        # batch first on every tensor, each with dims of its own: a (B,) tensor would come back
        # from Triton as (B, 1) (its reshape rule), so such bundles keep full dims
        batch_first = batch is not None and all(
            len(t.shape) > 1 and t.shape[0] == batch for t in tensors
        )
        config["max_batch_size"] = max_batch if batch_first else 0
        for kind, group in (("input", contract.inputs), ("output", contract.outputs)):
            config[kind] = [_tensor(t, _dims(t, batch, batch_first, static)) for t in group]
        if batch_first:
            # batch what queues while a call runs, as edgekit serve does (no added wait)
            config["dynamic_batching"] = {"max_queue_delay_microseconds": 0}
            how = f"max_batch_size {max_batch}, dynamic_batching"
        else:
            how = "max_batch_size 0 (the batch axis is not first on every tensor, or a tensor is (B,))"
    return config, how


def _recurrent(
    contract: IOContract,
    renamed: dict[str, str],
    spec: Callable[[TensorSpec], TensorSpec],
    drop_batch: bool,
) -> dict[str, Any]:
    """Inputs, outputs and implicit state of a recurrent bundle. One stream per call: batch fixed
    at 1 on inputs (Triton takes a fixed 1 for a dynamic input dim) and state (implicit state dims
    must be fixed); outputs keep their dynamic dims, which Triton compares with the graph exactly.
    Batched (`drop_batch`, the tensors batch first): the batch axis is Triton's own."""
    batch = contract.role_axis(BATCH)
    state_names = {p.input for p in contract.state} | {p.output for p in contract.state}
    fixed = {**_static(contract), **({batch: 1} if batch and not drop_batch else {})}
    sizes = contract.sizes(batch=1, time=1)
    states = []
    for pair in contract.state:
        tensor = spec(contract.spec(pair.input))
        dims = _dims(tensor, batch, drop_batch, {**sizes, **fixed})
        kind = TRITON_TYPES[tensor.dtype]
        states.append(
            {
                "input_name": pair.input,
                "output_name": renamed.get(pair.output, pair.output),
                "data_type": kind,
                "dims": dims,
                "initial_state": [
                    {"name": "zeros", "data_type": kind, "dims": dims, "zero_data": True}
                ],
            }
        )
    return {
        "input": [
            _tensor(spec(t), _dims(spec(t), batch, drop_batch, fixed))
            for t in contract.inputs
            if t.name not in state_names
        ],
        "output": [
            _tensor(spec(t), _dims(spec(t), batch, drop_batch, _static(contract)))
            for t in contract.outputs
            if t.name not in state_names
        ],
        "sequence_batching": {"max_sequence_idle_microseconds": IDLE_US, "state": states},
    }


def pbtxt(config: dict[str, Any], indent: str = "") -> str:
    """A configuration as protobuf text (config.pbtxt); enum values are written bare."""
    lines = []
    for key, value in config.items():
        for item in value if isinstance(value, list) and _messages(value) else [value]:
            if isinstance(item, dict):
                lines.append(f"{indent}{key} {{\n{pbtxt(item, indent + '  ')}{indent}}}\n")
            else:
                lines.append(f"{indent}{key}: {_scalar(key, item)}\n")
    return "".join(lines)


def _messages(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(v, dict) for v in value)


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return f"[{', '.join(map(str, value))}]"
    if isinstance(value, str) and key not in ENUMS:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


ENUMS = {"data_type"}  # fields whose values are protobuf enum names


def model_config(
    name: str,
    contract: IOContract,
    platform: str,
    max_batch: int,
    extra: str = "",
    renamed: dict[str, str] | None = None,
    batch_sequences: bool = False,
) -> tuple[str, str]:
    """(config.pbtxt text, how batching was set up, in words)."""
    config, how = triton_config(name, contract, platform, max_batch, renamed, batch_sequences)
    return pbtxt(config) + extra, how


def batch_axes(contract: IOContract) -> dict[str, int]:
    """Tensor -> its batch axis, for every tensor whose batch axis is not first."""
    batch = contract.role_axis(BATCH)
    return {
        t.name: t.shape.index(batch)
        for t in contract.inputs + contract.outputs
        if batch in t.shape and t.shape.index(batch) != 0
    }


def batch_first_spec(spec: TensorSpec, contract: IOContract) -> TensorSpec:
    axis = batch_axes(contract).get(spec.name)
    if axis is None:
        return spec
    shape = spec.shape[axis : axis + 1] + spec.shape[:axis] + spec.shape[axis + 1 :]
    return TensorSpec(spec.name, spec.dtype, shape, spec.range)
