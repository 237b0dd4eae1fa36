"""The backend registry: every backend named in one place, and a new one is one registration."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgekit
import edgekit.reference  # registers the torch reference backends
from edgekit.bench.core import run_bench
from edgekit.bench.runner import Budget
from edgekit.errors import InputError
from edgekit.manifest import read_manifest
from edgekit.runtimes import registry
from edgekit.runtimes.onnxruntime import OrtBackend


def test_every_backend_is_registered_once_in_listing_order() -> None:
    names = registry.names()
    assert names[:2] == ["torch", "ort-cpu"]
    assert set(names) == {
        "torch",
        "torch-cuda",
        "torch-cuda-graph",
        "ort-cpu",
        "ort-cuda",
        "ort-cuda-graph",
        "ort-trt",
        "openvino",
        "trt",
    }
    assert registry.get("torch").reference and not registry.get("ort-cpu").reference


def test_unknown_backend_and_device_list_the_known_ones(tiny_bundles: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="known backends: torch, ort-cpu"):
        registry.get("openvino-npu")
    with pytest.raises(InputError, match="unknown backend"):
        registry.parse("ort-cpu,nope")
    with pytest.raises(InputError, match="known devices: auto, cpu, cuda, tensorrt, openvino"):
        edgekit.load(tiny_bundles["linear"], device="npu")


def test_an_unavailable_backend_says_why(tiny_bundles: dict[str, Path]) -> None:
    bundle = tiny_bundles["linear"]
    manifest = read_manifest(bundle)
    reason = registry.get("trt").unavailable(bundle, manifest)
    assert reason is not None and ("tensorrt" in reason or "engine" in reason)
    with pytest.raises(InputError, match="backend trt cannot run here"):
        registry.open_backend("trt", bundle, manifest)


class SingleThreadOrt(OrtBackend):
    name = "ort-cpu-1t"


def test_a_new_backend_is_one_registration(
    tiny_bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered once, a backend is known to the CLI parser and timed by bench beside the others."""
    from edgekit.iospec import IOContract

    def open_single(bundle: Path, manifest, options) -> OrtBackend:  # type: ignore[no-untyped-def]
        return SingleThreadOrt(
            bundle / manifest["graph"], IOContract.from_manifest(manifest), threads=1
        )

    entry = registry.BackendEntry(
        name="ort-cpu-1t",
        device="cpu",
        summary="ONNX Runtime on one CPU thread",
        unavailable=lambda bundle, manifest: None,
        open=open_single,
        model_bytes=registry.get("ort-cpu").model_bytes,
        rank=11,
    )
    monkeypatch.setitem(registry._ENTRIES, entry.name, entry)
    assert registry.parse("ort-cpu,ort-cpu-1t") == ["ort-cpu", "ort-cpu-1t"]
    doc = run_bench(
        tiny_bundles["charlm"],
        ["ort-cpu", "ort-cpu-1t"],
        [1],
        Budget(warmup=1, iters=10, rounds=1),
        cold_start=False,
    )
    assert doc["backends"]["ort-cpu-1t"]["status"] == "ok"
    rows = {(r["backend"], r["case"]) for r in doc["results"]}
    assert {("ort-cpu-1t", "step bound B=1"), ("ort-cpu-1t", "prefill T=16")} <= rows
