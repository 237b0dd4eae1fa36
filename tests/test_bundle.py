"""The typed bundle: manifest types round-trip, validate and take views; one I/O description; one
rollout; the layering the bundle module exists for (torch-free, checked by reading the sources)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekit.bundle import Bundle, Manifest, Tolerance, Variant, read_manifest, write_manifest
from edgekit.bundle.dtypes import DTYPES
from edgekit.bundle.io import IOContract, StatePair, TensorSpec
from edgekit.errors import InputError
from edgekit.rollout import Trace, rollout, trace

PACKAGE = Path(__file__).resolve().parents[1] / "edgekit"


def _lm_contract(layers: int = 2, hidden: int = 4, vocab: int = 7) -> IOContract:
    state = (layers, "batch", hidden)
    return IOContract(
        [
            TensorSpec("tokens", "int64", ("batch", "time"), (0, vocab)),
            TensorSpec("state_in.h", "float32", state),
        ],
        [
            TensorSpec("logits", "float32", ("batch", "time", vocab)),
            TensorSpec("state_out.h", "float32", state),
        ],
        [StatePair("state_in.h", "state_out.h")],
        token_input="tokens",
        vocab_size=vocab,
    )


def _document(contract: IOContract) -> dict:
    return {
        "schema": "edgekit.bundle",
        "schema_version": 1,
        "task": "generate",
        "graph": "model.onnx",
        **contract.to_manifest(),
        "tolerance": {"atol": 1e-4, "rtol": 1e-3},
        "files": {"model.onnx": {"sha256": "0" * 64, "bytes": 1}},
        "model": {"name": "charlm", "config": {"cell": "gru"}},
        "vocab": list("abcdefg"),
    }


def test_a_document_round_trips_and_unknown_keys_survive():
    doc = _document(_lm_contract()) | {"future_field": {"x": 1}}
    manifest = Manifest.from_json(doc)
    assert manifest.task == "generate" and manifest.vocab == tuple("abcdefg")
    assert manifest.contract.state == [StatePair("state_in.h", "state_out.h")]
    again = manifest.to_json()
    assert again["future_field"] == {"x": 1}
    assert Manifest.from_json(again) == manifest


def test_an_old_document_without_the_newer_fields_still_loads():
    # what the first bundles said: no axes, no token_input, null labels, no golden or variants
    doc = _document(_lm_contract())
    for key in ("axes", "token_input"):
        doc.pop(key, None)
    doc["labels"] = None
    manifest = Manifest.from_json(doc)
    assert manifest.contract.token_input == "tokens"  # inferred: the first integer input
    assert manifest.golden is None and manifest.variants == () and manifest.labels is None
    assert manifest.at("auto") is manifest  # no variants: fp32


def test_validation_lists_every_problem_in_one_error():
    doc = _document(_lm_contract())
    doc["task"] = "dance"
    doc["graph"] = "../outside.onnx"
    doc["tolerance"] = {"atol": -1, "rtol": 1e-3}
    doc["inputs"][0]["dtype"] = "complex128"
    with pytest.raises(InputError) as err:
        Manifest.from_json(doc)
    text = str(err.value)
    for expected in ("task 'dance'", "graph '../outside.onnx'", "tolerance.atol", "complex128"):
        assert expected in text


def test_a_view_at_a_precision_takes_the_variants_graph_and_tolerances():
    doc = _document(_lm_contract())
    doc["files"]["model.int8.onnx"] = {"sha256": "1" * 64, "bytes": 1}
    manifest = Manifest.from_json(doc).with_variant(
        Variant("int8", "model.int8.onnx", Tolerance(0.05, 0.01), gates={"speed": {"ratio": 0.5}})
    )
    view = manifest.at("int8")
    assert (view.graph, view.precision, view.tolerance.atol) == ("model.int8.onnx", "int8", 0.05)
    assert manifest.at("auto", "cpu").precision == "int8"  # measured faster on the CPU
    assert manifest.at("auto", "cuda").precision == "fp32"  # no fp16 variant
    assert manifest.graph == "model.onnx"  # the view is a new value; the manifest is unchanged
    with pytest.raises(InputError, match="no fp16 variant"):
        manifest.at("fp16")
    # written, it is the base manifest with its variant, as quantize writes it
    assert Manifest.from_json(manifest.to_json()).variant("int8") == manifest.variant("int8")


def test_the_layout_is_a_view_of_the_contract_with_one_zero_state():
    contract = _lm_contract(layers=3, hidden=5)
    layout = contract.layout()
    assert layout.contract is contract
    zeros = layout.zero_state(4)
    assert {k: v.shape for k, v in zeros.items()} == {"state_in.h": (3, 4, 5)}
    assert all(np.array_equal(zeros[k], v) for k, v in contract.zero_state(4).items())
    assert [s.shape(4) for s in layout.state] == [contract.state_shape("state_in.h", 4)]


def test_one_dtype_table_serves_onnx_the_protocol_and_triton():
    from edgekit.serve.protocol import DATATYPES
    from edgekit.serve.triton import TRITON_TYPES

    for name, dtype in DTYPES.items():
        assert np.dtype(name).name == dtype.numpy
        assert np.dtype(DATATYPES[dtype.v2]) == np.dtype(name)
        if name in TRITON_TYPES:
            assert TRITON_TYPES[name] == dtype.triton


def test_a_bundle_on_disk_reads_typed_and_writes_back_unchanged(tiny_bundles, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundles["charlm"], copy)
    before = read_manifest(copy)
    bundle = Bundle.read(copy)
    assert bundle.graph == copy / "model.onnx" and bundle.manifest.golden is not None
    write_manifest(copy, bundle.manifest)
    after = json.loads((copy / "edgekit.json").read_text())
    # the same document, less the keys an older writer set to null (readers treat both as unset)
    assert {k: v for k, v in before.items() if v is not None and k != "token_input"} == {
        k: v for k, v in after.items() if k != "token_input"
    }
    assert Bundle.read(copy).manifest == bundle.manifest


class _LinearRecurrence:
    """A numpy stepper: h' = tanh(A h + E[token]), logits = W h'. One stream."""

    def __init__(self, seed: int, noise: float = 0.0) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.standard_normal((6, 6)) * 0.3
        self.e = rng.standard_normal((5, 6))
        self.w = rng.standard_normal((6, 5)) * 3 + noise * rng.standard_normal((6, 5))
        self.next_tokens = np.zeros(1, np.int64)
        self.next_logits = np.zeros((1, 5), np.float32)
        self.reset()

    def _call(self, token: int) -> np.ndarray:
        self.h = np.tanh(self.a @ self.h + self.e[token])
        self.next_logits[0] = self.h @ self.w
        return self.next_logits

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        for token in ids[0]:
            self._call(int(token))
        return self.next_logits

    def step(self) -> np.ndarray:
        return self._call(int(self.next_tokens[0]))

    def get_state(self) -> dict[str, np.ndarray]:
        return {"h": self.h.copy()}

    def set_state(self, state) -> None:
        self.h = np.array(state["h"])

    def reset(self) -> None:
        self.h = np.zeros(6)


def test_one_rollout_judges_live_and_stored_references_alike():
    prompt = np.array([[1, 2, 3]])
    live = rollout(_LinearRecurrence(0), _LinearRecurrence(0), 1e-4, 1e-3, prompt, steps=30)
    assert live.passed and live.steps == 30 and len(live.max_state_drift) == 30
    stored = trace(_LinearRecurrence(0), prompt, 30, every_state=False)
    assert isinstance(stored, Trace) and len(stored.states) == 1
    assert rollout(stored, _LinearRecurrence(0), 1e-4, 1e-3).passed
    # another model: a clear greedy choice differs and the states drift
    other = rollout(stored, _LinearRecurrence(0, noise=2.0), 1e-4, 1e-3)
    assert not other.passed and other.decisive_mismatch is not None


def test_a_candidate_that_fails_mid_rollout_is_a_finding_not_a_crash():
    class Breaks(_LinearRecurrence):
        def step(self):
            if len(self.calls) == 3:
                raise RuntimeError("time axis frozen at 3")
            self.calls.append(1)
            return super().step()

    broken = Breaks(0)
    broken.calls = []
    result = rollout(_LinearRecurrence(0), broken, 1e-4, 1e-3, np.array([[1]]), steps=10)
    assert not result.passed and result.error.startswith("step 4: RuntimeError")


# ---- layering: what the typed bundle exists for, read from the sources ---------------------------

KEY_READ = re.compile(r"\b(manifest|variant|engine|golden|tol|tolerance)(\.get\(|\[)\s*[\"']")


def test_no_module_outside_the_bundle_reads_the_manifest_by_key():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "bundle":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if KEY_READ.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def _imports(rel: str) -> set[str]:
    text = (PACKAGE / rel).read_text()
    return set(re.findall(r"^\s*(?:from|import) (edgekit[\w.]*)", text, re.M))


def test_parity_depends_on_the_io_description_only_and_exporters_not_on_bench():
    assert not any(m.startswith("edgekit.runtimes") for m in _imports("parity.py"))
    assert not any(m.startswith("edgekit.runtimes") for m in _imports("rollout.py"))
    for path in (PACKAGE / "exporters").rglob("*.py"):
        used = _imports(str(path.relative_to(PACKAGE)))
        assert not any(m.startswith("edgekit.bench") for m in used), path
    for rel in ("bundle/io.py", "bundle/layout.py", "bundle/manifest.py", "bundle/parts.py"):
        assert not any(
            m.startswith(("edgekit.runtimes", "edgekit.exporters")) for m in _imports(rel)
        )
