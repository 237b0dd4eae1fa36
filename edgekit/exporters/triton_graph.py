"""Graphs derived from a bundle's own for Triton, each checked against it before it is written.

- Batch first. Triton's batchers need the batch axis first on every tensor (and implicit state
  without it in the config), while a recurrent bundle's state is (layers, batch, hidden) and a
  time-major model's tokens are (time, batch). The derived graph takes and returns every such
  tensor batch first, with one Transpose at each edge around the bundle's own nodes.
- State pairing. Triton pairs a sequence's implicit state outputs with its state inputs by their
  rank in name order, not by the configured (input_name, output_name) pairs
  (triton-inference-server/server#8586, core through 2.64 at least): a bundle whose state outputs
  sort differently from their inputs, such as `h -> output.1.0` and `c -> output.1.1`, would have
  its h and c swapped after the first request. Such state outputs are renamed so both orders
  agree; clients never see the names of implicit state.

The check runs the bundle's graph and the derived one on the same random feeds (moved to batch
first where the derived graph takes them so) and requires every output to be equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.bundle.io import IOContract
from edgekit.errors import InputError
from edgekit.serve.triton import batch_axes

RENAMED = "edgekit_state_out.{:03d}"  # sorts as the state inputs do, pair by pair
INNER = "{}.edgekit_inner"  # the bundle's own tensor, behind the Transpose at a graph edge


def state_output_renames(contract: IOContract) -> dict[str, str]:
    """Old -> new names of the state outputs Triton needs renamed (empty: none)."""
    by_input = sorted(contract.state, key=lambda p: p.input)
    by_output = sorted(contract.state, key=lambda p: p.output)
    if by_input == by_output:
        return {}
    renames = {p.output: RENAMED.format(k) for k, p in enumerate(by_input)}
    taken = {t.name for t in contract.inputs + contract.outputs} - set(renames)
    clash = sorted(set(renames.values()) & taken)
    if clash:
        raise InputError(f"the graph already has tensors named {clash}; rename them to export")
    return renames


def write_derived(
    source: Path, target: Path, contract: IOContract, renames: dict[str, str], batch_first: bool
) -> None:
    """`source` with its state outputs renamed and (with `batch_first`) every tensor batch first,
    written to `target` once it gives the bundle's outputs exactly."""
    onnx = require("onnx", "a Triton repository derived from the bundle's graph")
    model = onnx.load(str(source))
    moved = batch_axes(contract) if batch_first else {}
    if moved:
        _move_batch_first(onnx, model.graph, moved)
    _rename(model.graph, renames)
    target.write_bytes(model.SerializeToString())
    _check_same(source, target, contract, renames, moved)


def _move_batch_first(onnx: Any, graph: Any, moved: dict[str, int]) -> None:
    inner = {name: INNER.format(name) for name in moved}
    inputs = {v.name for v in graph.input}
    _rename(graph, inner, graph_outputs=False)  # the bundle's nodes now read and write `inner`
    before, after = [], []  # Transposes at the edges: the graph's nodes stay in order between
    for value in [*graph.input, *graph.output]:
        if value.name not in moved:
            continue
        b = moved[value.name]
        dims = value.type.tensor_type.shape.dim
        order = [b, *range(b), *range(b + 1, len(dims))]  # batch-first axis k = own axis order[k]
        copies = [type(d)() for d in dims]
        for d, copy in zip(dims, copies, strict=True):
            copy.CopyFrom(d)
        for k, own in enumerate(order):
            dims[k].CopyFrom(copies[own])
        make = onnx.helper.make_node
        if value.name in inputs:  # batch first in, the bundle's layout inside
            back = [order.index(i) for i in range(len(order))]
            before.append(make("Transpose", [value.name], [inner[value.name]], perm=back))
        else:  # the bundle's layout inside, batch first out
            after.append(make("Transpose", [inner[value.name]], [value.name], perm=order))
    nodes = [*before, *graph.node, *after]
    del graph.node[:]
    graph.node.extend(nodes)


def _rename(graph: Any, renames: dict[str, str], graph_outputs: bool = True) -> None:
    """Rename tensors wherever nodes read or write them (Loop / If bodies too), and the graph's
    outputs unless `graph_outputs` is False (then only their producers move)."""
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
        for attribute in node.attribute:  # bodies may read an outer tensor by name
            for sub in [attribute.g, *attribute.graphs]:
                _rename(sub, renames)
    outputs_too = list(graph.output) if graph_outputs else []
    for value in [*outputs_too, *graph.value_info]:
        value.name = renames.get(value.name, value.name)


def _check_same(
    source: Path,
    target: Path,
    contract: IOContract,
    renames: dict[str, str],
    moved: dict[str, int],
) -> None:
    ort = require("onnxruntime", "checking a graph derived for Triton")
    feeds = contract.example(2, 3, np.random.default_rng(0))
    want = dict(
        zip(contract.output_names, _run(ort, source, feeds, contract.output_names), strict=True)
    )
    moved_feeds = {n: _first(v, moved.get(n)) for n, v in feeds.items()}
    names = [renames.get(n, n) for n in contract.output_names]
    got = dict(zip(contract.output_names, _run(ort, target, moved_feeds, names), strict=True))
    for name, value in want.items():
        if not np.array_equal(_first(value, moved.get(name)), got[name], equal_nan=True):
            raise InputError(f"{target.name}: the derived graph's {name} differs from the bundle's")


def _first(value: np.ndarray, axis: int | None) -> np.ndarray:
    return value if axis is None else np.moveaxis(value, axis, 0)


def _run(ort: Any, path: Path, feeds: dict[str, np.ndarray], names: list[str]) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(names, feeds)
