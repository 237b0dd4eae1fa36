"""Graphs derived from a bundle's own for Triton, each checked against it before it is written.

Triton pairs a sequence's implicit state outputs with its state inputs by their rank in name order,
not by the configured (input_name, output_name) pairs (triton-inference-server/server#8586, core
through 2.64 at least): a bundle whose state outputs sort differently from their inputs, such as
`h -> output.1.0` and `c -> output.1.1`, would have its h and c swapped after the first request.
Such a graph gets its state outputs renamed so both orders agree; clients never see the names of
implicit state, and the renamed graph must give the original's outputs exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.bundle.io import IOContract
from edgekit.errors import InputError

RENAMED = "edgekit_state_out.{:03d}"  # sorts as the state inputs do, pair by pair


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


def write_renamed(
    source: Path, target: Path, renames: dict[str, str], contract: IOContract
) -> None:
    """`source` with tensors renamed, written to `target` after it gives the same outputs."""
    onnx = require("onnx", "a Triton repository whose state outputs must be renamed")
    model = onnx.load(str(source))
    _rename(model.graph, renames)
    target.write_bytes(model.SerializeToString())
    _check_same(source, target, renames, contract)


def _rename(graph: Any, renames: dict[str, str]) -> None:
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
        for attribute in node.attribute:  # Loop / If bodies may read an outer tensor by name
            for sub in [attribute.g, *attribute.graphs]:
                _rename(sub, renames)
    for value in [*graph.output, *graph.value_info]:
        value.name = renames.get(value.name, value.name)


def _check_same(source: Path, target: Path, renames: dict[str, str], contract: IOContract) -> None:
    ort = require("onnxruntime", "checking a graph derived for Triton")
    feeds = contract.example(2, 3, np.random.default_rng(0))
    want = dict(
        zip(contract.output_names, _run(ort, source, feeds, contract.output_names), strict=True)
    )
    names = [renames.get(n, n) for n in contract.output_names]
    got = dict(zip(names, _run(ort, target, feeds, names), strict=True))
    for name, value in want.items():
        if not np.array_equal(value, got[renames.get(name, name)], equal_nan=True):
            raise InputError(f"{target.name}: the renamed graph's {name} differs from the bundle's")


def _run(ort: Any, path: Path, feeds: dict[str, np.ndarray], names: list[str] | None = None) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(names, feeds)
