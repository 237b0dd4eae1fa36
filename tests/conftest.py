"""Shared fixtures: tiny training runs, so the whole suite stays fast on a 2-core CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

# Tiny configurations per model: enough to exercise every code path, seconds to train.
TINY: dict[str, dict] = {
    "linear": {"epochs": 200},
    "logistic": {"epochs": 200},
    "cnn": {"epochs": 1, "image_size": 32, "samples": 16, "batch_size": 8},
    "lenet": {"epochs": 1},
    "rowlstm": {"epochs": 1, "rowlstm_hidden": 16},
    "charlm": {"epochs": 1, "hidden": 16, "layers": 1, "seq_len": 16, "max_chars": 4000},
}


def train_tiny(model: str, out: Path, **overrides) -> object:
    from edgekit.training import TrainOptions, train

    opts = TrainOptions(model=model, **{**TINY[model], **overrides})
    ckpt, _ = train(opts, out)
    return ckpt


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny checkpoint per zoo model (charlm with an LSTM cell), trained once per session."""
    root = tmp_path_factory.mktemp("ckpt")
    return {m: train_tiny(m, root / m).path for m in TINY}  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def tiny_bundles(
    tiny_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """One read-only bundle per tiny checkpoint, exported once per session (tests copy before damaging)."""
    from edgekit.exporters import bundle_from_checkpoint

    root = tmp_path_factory.mktemp("bundles")
    return {
        m: bundle_from_checkpoint(ck, root / m, steps=5)[0] for m, ck in tiny_checkpoints.items()
    }
