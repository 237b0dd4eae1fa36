"""Quantize's classifier gates both apply, always: a variant that disagrees with fp32 is refused
even when held-out labels exist (labels alone once let a variant with 0% top-1 agreement pass)."""

from __future__ import annotations

from pathlib import Path

from edgekit.bundle import Bundle
from edgekit.exporters.quantize.data import data_split_of
from edgekit.exporters.quantize.gates import measure


def flipped_graph(bundle: Path, out: Path) -> Path:
    """The bundle's graph with its first output, one sigmoid probability p, made 1 - p: every
    top-1 class flips."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(bundle / "model.onnx"))
    graph = model.graph
    first = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{first}.raw" if o == first else o for o in node.output]
    graph.initializer.append(numpy_helper.from_array(np.ones((), np.float32), "one"))
    graph.node.append(helper.make_node("Sub", ["one", f"{first}.raw"], [first]))
    path = out / "flipped.onnx"
    onnx.save(model, str(path))
    return path


def test_a_classifier_variant_that_always_disagrees_fails_with_labels_present(
    tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = tiny_bundles["cnn"]
    manifest = Bundle.read(bundle).manifest
    split, _ = data_split_of(manifest)
    assert split is not None and split.targets is not None  # held-out labels exist
    gates = measure(bundle, manifest, flipped_graph(bundle, tmp_path), split)
    assert gates["top1_agreement"] == 0.0
    assert not gates["passed"]
    assert any(f.startswith("top-1 agreement 0.00% <") for f in gates["failures"]), gates


def test_the_same_graph_passes_the_agreement_gate(tiny_bundles: dict[str, Path]) -> None:
    bundle = tiny_bundles["cnn"]
    manifest = Bundle.read(bundle).manifest
    split, _ = data_split_of(manifest)
    gates = measure(bundle, manifest, bundle / "model.onnx", split)
    assert gates["top1_agreement"] == 1.0
    assert not [f for f in gates["failures"] if "agreement" in f], gates
