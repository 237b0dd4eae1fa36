"""The runtime reads the typed manifest: load, the registry, engines, golden replay, task objects."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgekit
from edgekit.bundle import Bundle, Engine, Manifest
from edgekit.bundle.directory import read_manifest
from edgekit.errors import InputError
from edgekit.runtimes import registry
from edgekit.runtimes.engine_format import engine_tolerance, pick_engine
from edgekit.runtimes.golden import replay
from edgekit.runtimes.loader import auto_precision, with_precision
from edgekit.runtimes.onnxruntime import step_graph_of
from edgekit.runtimes.tensorrt import unavailable_reason

RECORD = {
    "file": "engine.a.plan",
    "gpu": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
    "tensorrt": "10.13.0",
    "fp16": True,
    "max_batch": 8,
    "max_seq": 64,
}


def test_load_gives_task_objects_a_typed_manifest(tiny_bundles: dict[str, Path]) -> None:
    model = edgekit.load(tiny_bundles["charlm"])
    assert isinstance(model.manifest, Manifest)
    assert model.manifest.task == "generate" and model.manifest["graph"] == "model.onnx"
    assert list(model.manifest.vocab or ()) == model.vocab
    classifier = edgekit.load(tiny_bundles["cnn"])
    assert isinstance(classifier.manifest, Manifest) and classifier.manifest.preprocess
    with pytest.raises(InputError, match="no int8 variant .* edgekit quantize BUNDLE --int8"):
        edgekit.load(tiny_bundles["linear"], precision="int8")


def test_with_precision_is_the_typed_view(tiny_bundles: dict[str, Path]) -> None:
    doc = read_manifest(tiny_bundles["linear"])
    seen = with_precision(doc, "fp32")
    assert isinstance(seen, Manifest) and seen == Manifest.of(doc).at("fp32")
    with pytest.raises(InputError, match="unknown precision"):
        with_precision(seen, "int4")


def test_auto_precision_takes_variants_or_their_records() -> None:
    assert auto_precision({"int8": {"gates": {"speed": {"ratio": 0.5}}}}, "cpu") == "int8"
    assert auto_precision({}, "cuda") == "fp32"


def test_registry_takes_a_manifest_or_its_document(tiny_bundles: dict[str, Path]) -> None:
    bundle = tiny_bundles["charlm"]
    typed = Bundle.read(bundle).manifest
    doc = read_manifest(bundle)
    for manifest in (typed, doc):
        backend = registry.open_backend("ort-cpu", bundle, manifest)
        assert backend.contract.token_input == typed.contract.token_input
        assert registry.graph_bytes(bundle, manifest) == (bundle / typed.graph).stat().st_size
    # without a bundle: whether a backend can run here at all
    assert registry.get("ort-cpu").unavailable(Path("."), None) is None
    assert registry.get("trt").unavailable(bundle, typed) is not None


def test_step_graph_of_reads_the_typed_record(tiny_bundles: dict[str, Path]) -> None:
    bundle = tiny_bundles["charlm"]
    manifest = Bundle.read(bundle).manifest
    assert step_graph_of(bundle, manifest) == Bundle(bundle, manifest).step_graph
    assert (
        step_graph_of(bundle, manifest, used_only=False) == Bundle(bundle, manifest).any_step_graph
    )
    plain = Bundle.read(tiny_bundles["linear"]).manifest
    assert step_graph_of(tiny_bundles["linear"], plain, used_only=False) is None


def test_golden_replay_takes_a_manifest_or_its_document(tiny_bundles: dict[str, Path]) -> None:
    bundle = tiny_bundles["charlm"]
    typed = Bundle.read(bundle).manifest
    backend = registry.open_backend("ort-cpu", bundle, typed)
    assert replay(bundle, typed, backend).passed
    assert replay(bundle, read_manifest(bundle), backend).passed


def test_engines_are_typed_and_records_still_accepted() -> None:
    engine = Engine.from_json(RECORD)
    assert Manifest.engines_of({"engines": [RECORD]}) == (engine,)
    assert pick_engine({"engines": [RECORD]}, engine.gpu, "9.0", "10.13.0")["file"] == engine.file
    assert engine_tolerance(engine, 1e-4, 1e-3) == engine_tolerance(RECORD, 1e-4, 1e-3)
    assert unavailable_reason(Path("."), None) in (None, unavailable_reason(Path("."), {}))


def test_pick_engine_on_a_manifest_returns_an_engine(tiny_bundles: dict[str, Path]) -> None:
    manifest = Bundle.read(tiny_bundles["linear"]).manifest.with_engine(Engine.from_json(RECORD))
    picked = pick_engine(manifest, "NVIDIA H100 80GB HBM3", "9.0", "10.13.0")
    assert isinstance(picked, Engine) and picked.max_batch == 8
    with pytest.raises(InputError, match="built for NVIDIA H100 .* edgekit engine BUNDLE"):
        pick_engine(manifest, "NVIDIA A10G", "8.6", "10.13.0")


def test_task_objects_built_by_hand_take_the_keys_they_read(
    tiny_bundles: dict[str, Path],
) -> None:
    backend = registry.open_backend(
        "ort-cpu", tiny_bundles["charlm"], read_manifest(tiny_bundles["charlm"])
    )
    manifest = Manifest.for_task("generate", backend.contract, {"vocab": ["a", "b"]})
    assert manifest.vocab == ("a", "b") and manifest.contract is backend.contract
    assert manifest.task == "generate" and manifest.labels is None
