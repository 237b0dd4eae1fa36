"""The model zoo's registry: name -> task, config class, builder and spec. Torch-free: torch is
imported only on build, and the spec's exporter-side builders are named, imported when called."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgekit.bundle.io import IOContract
from edgekit.bundle.parts import Tolerance
from edgekit.errors import InputError
from edgekit.models import contracts

SAMPLES = "edgekit.exporters.samples"  # the data split builders
CELLS = ("rnn", "lstm", "gru", "scratch-rnn", "scratch-lstm")  # charlm recurrent cells


def _named(ref: str) -> Any:
    """The function a "package.module:function" reference names (its module imported now)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ModelSpec:
    """What export, parity and quantisation need to know of one zoo model (cf. Optimum's OnnxConfig).

    Builders that need numpy data code or torch are named ("package.module:function") and imported
    only when called, so the registry stays torch-free.
    """

    contract: Callable[[dict[str, Any]], IOContract]  # config dict -> its I/O contract
    head: Callable[[dict[str, Any]], str] | None = None  # classifiers: "probability" | "logits"
    tolerance: Tolerance = field(default_factory=Tolerance)  # fp32 parity bound against torch
    data_split: str | None = None  # (meta, source) -> samples.Split: the held-out data rebuilt
    step_graph: str | None = None  # (zoo model, contract, path) -> None: a one-token step graph

    def head_for(self, config: dict[str, Any]) -> str | None:
        return self.head(config) if self.head is not None else None

    def data_split_builder(self) -> Callable[[dict[str, Any], str], Any] | None:
        return _named(self.data_split) if self.data_split else None

    def step_graph_builder(self) -> Callable[[Any, IOContract, Any], None] | None:
        return _named(self.step_graph) if self.step_graph else None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str  # "classify" | "regress" | "generate"
    module: str  # edgekit.models.<module> holds `Config` classes and builders
    config: str  # name of the config dataclass in that module
    builder: str  # name of the nn.Module class (built as Builder(config))
    summary: str
    spec: ModelSpec

    def config_class(self) -> type:
        return getattr(importlib.import_module(f"edgekit.models.{self.module}"), self.config)

    def build(self, config: Any) -> Any:
        cls = getattr(importlib.import_module(f"edgekit.models.{self.module}"), self.builder)
        return cls(config)

    def config_from_dict(self, values: dict[str, Any]) -> Any:
        cls = self.config_class()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                f"{self.name} config has unknown fields {unknown}; known: {sorted(known)}"
            )
        wrong = [
            f"{f.name}={values[f.name]!r} (expected {_kind(f.default)})"
            for f in dataclasses.fields(cls)
            if f.name in values and not _fits(values[f.name], f.default)
        ]
        if wrong:
            raise InputError(f"{self.name} config has values of the wrong type: {', '.join(wrong)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _kind(default: Any) -> str:
    return "a list" if isinstance(default, tuple) else type(default).__name__


def _fits(value: Any, default: Any) -> bool:
    """A config value of the type its field's default has (ints >= 0 for sizes and counts)."""
    if default is dataclasses.MISSING or default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple))
    return True


MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in [
        ModelEntry(
            "linear",
            "regress",
            "tabular",
            "LinearConfig",
            "LinearRegression",
            "multivariate linear regression (temperature, price -> sales)",
            ModelSpec(
                contracts.linear_contract,
                tolerance=Tolerance(1e-3, 1e-4),  # outputs in the hundreds: rtol carries the check
                data_split=f"{SAMPLES}:table_split",
            ),
        ),
        ModelEntry(
            "logistic",
            "classify",
            "tabular",
            "LogisticConfig",
            "LogisticRegression",
            "logistic regression (temperature -> goes out)",
            ModelSpec(
                contracts.logistic_contract,
                contracts.probability_head,
                data_split=f"{SAMPLES}:table_split",
            ),
        ),
        ModelEntry(
            "cnn",
            "classify",
            "cnn",
            "CNNConfig",
            "CatDogCNN",
            "the cat/dog CNN: 4 conv blocks 3->16->32->64->128, 1x1 conv, global avg pool",
            ModelSpec(
                contracts.cnn_contract, contracts.cnn_head, data_split=f"{SAMPLES}:image_split"
            ),
        ),
        ModelEntry(
            "lenet",
            "classify",
            "cnn",
            "LeNetConfig",
            "LeNet",
            "LeNet-style digit CNN on 1x28x28",
            ModelSpec(
                contracts.digits_contract,
                contracts.logits_head,
                data_split=f"{SAMPLES}:digit_split",
            ),
        ),
        ModelEntry(
            "rowlstm",
            "classify",
            "rowlstm",
            "RowLSTMConfig",
            "RowLSTM",
            "LSTM(28 -> 100) over the 28 image rows, FC on the last step",
            ModelSpec(
                contracts.digits_contract,
                contracts.logits_head,
                data_split=f"{SAMPLES}:digit_split",
            ),
        ),
        ModelEntry(
            "charlm",
            "generate",
            "charlm",
            "CharLMConfig",
            "CharLM",
            "character language model: rnn | lstm | gru | scratch-rnn | scratch-lstm cells",
            ModelSpec(
                contracts.charlm_contract,
                data_split=f"{SAMPLES}:text_split",
                step_graph="edgekit.exporters.step_graph:export_step_graph",
            ),
        ),
    ]
}


def get_model(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def contract_of(meta: dict[str, Any]) -> IOContract:
    """The contract of a zoo model, from its checkpoint metadata."""
    model, config = meta["model"], meta["config"]
    if model not in MODELS:
        raise InputError(f"no I/O contract for model {model!r}")
    return MODELS[model].spec.contract(config)


def head_of(meta: dict[str, Any]) -> str | None:
    """How a classifier's output becomes probabilities: one sigmoid output, or softmax over logits."""
    if meta["task"] != "classify":
        return None
    contract_of(meta)  # an unknown model is refused as it always was
    return MODELS[meta["model"]].spec.head_for(meta["config"])


@dataclass(frozen=True)
class ModelFacts:
    """What export needs of one zoo checkpoint, all from its model's spec."""

    contract: IOContract
    head: str | None
    tolerance: Tolerance
    data_split: Callable[[dict[str, Any], str], Any] | None
    step_graph: Callable[[Any, IOContract, Any], None] | None


def facts_of(meta: dict[str, Any]) -> ModelFacts:
    """The spec's facts for a checkpoint's metadata (an unknown model is refused by name)."""
    contract = contract_of(meta)  # refuses an unknown model
    spec = MODELS[meta["model"]].spec
    head = spec.head_for(meta["config"]) if meta["task"] == "classify" else None
    return ModelFacts(
        contract, head, spec.tolerance, spec.data_split_builder(), spec.step_graph_builder()
    )
