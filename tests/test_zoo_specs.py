"""Each zoo model's facts in one place: its spec in the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgekit.bundle.parts import Tolerance
from edgekit.errors import InputError
from edgekit.exporters.samples import data_split, real_samples
from edgekit.iospec import contract_for, head_for
from edgekit.models import MODELS
from edgekit.models.registry import facts_of

LM = {"cell": "lstm", "layers": 2, "hidden": 8, "vocab_size": 11}


@pytest.mark.parametrize(
    ("model", "task", "config", "outputs", "head"),
    [
        ("linear", "regress", {"in_features": 2}, ["prediction"], None),
        ("logistic", "classify", {"in_features": 1}, ["probability"], "probability"),
        ("cnn", "classify", {"num_classes": 2, "image_size": 32}, ["probability"], "probability"),
        ("cnn", "classify", {"num_classes": 5}, ["logits"], "logits"),
        ("lenet", "classify", {"num_classes": 2}, ["logits"], "logits"),
        ("rowlstm", "classify", {"num_classes": 10}, ["logits"], "logits"),
        ("charlm", "generate", LM, ["logits", "state_out.h", "state_out.c"], None),
        ("charlm", "generate", {**LM, "cell": "gru"}, ["logits", "state_out.h"], None),
    ],
)
def test_the_contract_and_head_come_from_the_spec(
    model: str, task: str, config: dict, outputs: list[str], head: str | None
) -> None:
    meta = {"model": model, "task": task, "config": config}
    contract = contract_for(meta)
    assert [t.name for t in contract.outputs] == outputs
    assert contract == MODELS[model].spec.contract(config)
    assert head_for(meta) == head


def test_image_contracts_keep_channels_and_size() -> None:
    cnn = contract_for({"model": "cnn", "task": "classify", "config": {"num_classes": 2}})
    lenet = contract_for({"model": "lenet", "task": "classify", "config": {"num_classes": 10}})
    assert cnn.inputs[0].shape == ("batch", 3, 28, 28)
    assert lenet.inputs[0].shape == ("batch", 1, 28, 28)
    lm = contract_for({"model": "charlm", "task": "generate", "config": LM})
    assert lm.token_input == "tokens" and lm.vocab_size == 11 and len(lm.state) == 2


def test_unknown_models_are_refused_as_before() -> None:
    with pytest.raises(InputError, match="no I/O contract for model 'resnet'"):
        contract_for({"model": "resnet", "task": "classify", "config": {}})
    assert head_for({"model": "resnet", "task": "regress", "config": {}}) is None
    meta = {"model": "resnet", "data": {"source": "x"}}
    with pytest.raises(InputError, match="no real data for model resnet"):
        data_split(meta)
    assert real_samples(meta) == ([], "no real data for model resnet")


def test_tolerances_and_step_graphs() -> None:
    assert {n: e.spec.tolerance for n, e in MODELS.items() if e.spec.tolerance != Tolerance()} == {
        "linear": Tolerance(1e-3, 1e-4)
    }
    assert [n for n, e in MODELS.items() if e.spec.step_graph] == ["charlm"]
    assert all(e.spec.data_split_builder() is not None for e in MODELS.values())
    from edgekit.exporters import step_graph

    assert MODELS["charlm"].spec.step_graph_builder() is step_graph.export_step_graph
    assert MODELS["cnn"].spec.step_graph_builder() is None


def test_the_facts_export_takes_come_from_the_spec_in_one_place() -> None:
    from edgekit.exporters import step_graph

    meta = {"model": "charlm", "task": "generate",
            "config": {"cell": "gru", "layers": 2, "hidden": 8, "vocab_size": 5}}  # fmt: skip
    facts = facts_of(meta)
    assert [p.input for p in facts.contract.state] == ["state_in.h"] and facts.head is None
    assert facts.tolerance == Tolerance() and facts.step_graph is step_graph.export_step_graph
    assert facts.data_split is not None
    with pytest.raises(InputError, match="no I/O contract for model 'nope'"):
        facts_of({**meta, "model": "nope"})


def test_the_registry_and_iospec_stay_torch_free() -> None:
    code = "import edgekit.iospec, edgekit.models.registry, sys; print(' '.join(sys.modules))"
    mods = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout.split())  # fmt: skip
    assert not mods & {"torch", "onnx", "edgekit.exporters.samples", "edgekit.exporters"}
