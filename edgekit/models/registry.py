"""The model zoo's registry: name -> task, config class and builder. Torch is imported only on build."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from edgekit.errors import InputError

CELLS = ("rnn", "lstm", "gru", "scratch-rnn", "scratch-lstm")  # charlm recurrent cells


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str  # "classify" | "regress" | "generate"
    module: str  # edgekit.models.<module> holds `Config` classes and builders
    config: str  # name of the config dataclass in that module
    builder: str  # name of the nn.Module class (built as Builder(config))
    summary: str

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
        ),
        ModelEntry(
            "logistic",
            "classify",
            "tabular",
            "LogisticConfig",
            "LogisticRegression",
            "logistic regression (temperature -> goes out)",
        ),
        ModelEntry(
            "cnn",
            "classify",
            "cnn",
            "CNNConfig",
            "CatDogCNN",
            "the cat/dog CNN: 4 conv blocks 3->16->32->64->128, 1x1 conv, global avg pool",
        ),
        ModelEntry(
            "lenet", "classify", "cnn", "LeNetConfig", "LeNet", "LeNet-style digit CNN on 1x28x28"
        ),
        ModelEntry(
            "rowlstm",
            "classify",
            "rowlstm",
            "RowLSTMConfig",
            "RowLSTM",
            "LSTM(28 -> 100) over the 28 image rows, FC on the last step",
        ),
        ModelEntry(
            "charlm",
            "generate",
            "charlm",
            "CharLMConfig",
            "CharLM",
            "character language model: rnn | lstm | gru | scratch-rnn | scratch-lstm cells",
        ),
    ]
}


def get_model(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None
