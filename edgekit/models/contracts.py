"""The zoo models' I/O contracts and classifier heads, from their config dicts (torch-free).

Each zoo model's spec (registry.py) names its contract builder and head here.
"""

from __future__ import annotations

from typing import Any

from edgekit.bundle.io import Dim, IOContract, StatePair, TensorSpec

Config = dict[str, Any]


def _table(config: Config, output: str) -> IOContract:
    return IOContract(
        [TensorSpec("features", "float32", ("batch", config["in_features"]))],
        [TensorSpec(output, "float32", ("batch", 1))],
    )


def linear_contract(config: Config) -> IOContract:
    return _table(config, "prediction")


def logistic_contract(config: Config) -> IOContract:
    return _table(config, "probability")


def _image(config: Config, channels: int, head: str) -> IOContract:
    size = config.get("image_size", 28)
    out = (
        TensorSpec("probability", "float32", ("batch", 1))
        if head == "probability"
        else TensorSpec("logits", "float32", ("batch", config["num_classes"]))
    )
    return IOContract([TensorSpec("image", "float32", ("batch", channels, size, size))], [out])


def cnn_contract(config: Config) -> IOContract:
    """RGB images; two classes end in one sigmoid output (the seed's cat/dog head)."""
    return _image(config, 3, cnn_head(config))


def digits_contract(config: Config) -> IOContract:
    """Grey-scale images (lenet, rowlstm), logits over the classes."""
    return _image(config, 1, logits_head(config))


def charlm_contract(config: Config) -> IOContract:
    names = ("h", "c") if config["cell"] in ("lstm", "scratch-lstm") else ("h",)
    state_shape: tuple[Dim, ...] = (config["layers"], "batch", config["hidden"])
    v = config["vocab_size"]
    return IOContract(
        [TensorSpec("tokens", "int64", ("batch", "time"), (0, v))]
        + [TensorSpec(f"state_in.{n}", "float32", state_shape) for n in names],
        [TensorSpec("logits", "float32", ("batch", "time", v))]
        + [TensorSpec(f"state_out.{n}", "float32", state_shape) for n in names],
        [StatePair(f"state_in.{n}", f"state_out.{n}") for n in names],
        token_input="tokens",
        vocab_size=v,
    )


# How a classifier's output becomes probabilities: "probability" (one sigmoid output) or "logits"
# (softmax over them). The head names the classifier's output in its contract.


def probability_head(config: Config) -> str:
    return "probability"


def logits_head(config: Config) -> str:
    return "logits"


def cnn_head(config: Config) -> str:
    return "probability" if config["num_classes"] == 2 else "logits"
