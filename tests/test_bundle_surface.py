"""serve, bench and the CLI read the typed manifest: one dtype table, Manifest.of at public entries,
one Sampling per generate request."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgekit.bundle import DTYPES, Bundle, Variant, read_manifest
from edgekit.errors import InputError


def test_the_serving_type_tables_come_from_the_one_dtype_table() -> None:
    from edgekit.serve.protocol import DATATYPES, NUMPY_TO_V2, v2_datatype
    from edgekit.serve.triton import TRITON_TYPES

    assert {name: d.triton for name, d in DTYPES.items()} == TRITON_TYPES
    assert set(DATATYPES) == {d.v2 for d in DTYPES.values()}
    for name, d in DTYPES.items():
        assert np.dtype(DATATYPES[d.v2]) == np.dtype(name)
        assert NUMPY_TO_V2[np.dtype(name)] == d.v2 == v2_datatype(name)
    # the order an unknown datatype's error lists them in is unchanged
    assert list(DATATYPES) == [
        "BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64",
    ]  # fmt: skip


def test_bench_helpers_take_a_manifest_or_its_document(tiny_bundles: dict[str, Path]) -> None:
    from edgekit.bench.core import floor_graph, quality_delta

    bundle = tiny_bundles["charlm"]
    doc = read_manifest(bundle)
    typed = Bundle.read(bundle).manifest
    assert floor_graph(bundle, doc) == floor_graph(bundle, typed)
    assert floor_graph(bundle, typed).is_file()
    assert quality_delta(doc, "int8") == quality_delta(typed, "int8") == ""  # no variant yet


def test_quality_delta_reads_the_variant_gates(tiny_bundles: dict[str, Path]) -> None:
    from edgekit.bench.core import quality_delta

    base = Bundle.read(tiny_bundles["linear"]).manifest
    variant = Variant("int8", "model.int8.onnx", base.tolerance, gates={"output_error": 0.0125})
    assert quality_delta(base.with_variant(variant), "int8") == "output error 1.25%"
    assert quality_delta(base.with_variant(variant), "fp16") == ""


def test_a_generate_request_carries_one_generation() -> None:
    from edgekit.runtimes.decode import Generation, Sampling
    from edgekit.serve.generate import _request

    # a served model as _request sees it: its name, manifest, generator and sequences
    served = SimpleNamespace(
        name="lm", manifest=SimpleNamespace(task="generate"), model="the generator", sequences=1
    )
    body = {"text_input": "ab", "parameters": {"max_tokens": 7, "temperature": 0.5, "top_k": 3,
                                                "seed": 1, "stop": "x"}}  # fmt: skip
    generator, prompt, options = _request(served, json.dumps(body).encode())
    assert generator == "the generator" and prompt == "ab"
    assert options == Generation(7, Sampling(0.5, 3, None), 1, ["x"])
    served.manifest = SimpleNamespace(task="classify")
    with pytest.raises(InputError, match="lm is a classify model; generate needs text"):
        _request(served, json.dumps(body).encode())


def test_the_quantize_summary_takes_a_variant_or_its_record(tiny_bundles: dict[str, Path]) -> None:
    from edgekit.cli.quantize import summary

    tol = Bundle.read(tiny_bundles["linear"]).manifest.tolerance
    gates = {"output_error": 0.01, "output_error_torch": 0.02, "passed": True,
             "speed": {"variant_us": 10.0, "fp32_us": 20.0, "ratio": 0.5}}  # fmt: skip
    details = {"bytes_ratio": 0.3, "recipe": {"why": "dynamic"}, "float_ops": []}
    variant = Variant("int8", "model.int8.onnx", tol, gates=gates, details=details)
    text = summary(Path("b"), variant)
    assert text == summary(Path("b"), variant.to_json())
    assert (
        text.splitlines()[0]
        == "int8 variant: b/model.int8.onnx (adds 0.30x the fp32 file; dynamic)"
    )
    assert text.splitlines()[-1] == "gates: PASS"
