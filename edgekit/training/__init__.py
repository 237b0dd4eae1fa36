"""Training: `train(options)` runs a model's recipe and writes a checkpoint."""

from __future__ import annotations

import dataclasses
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgekit.training.options import TrainOptions


def library_versions() -> dict[str, str]:
    import numpy
    import torch

    from edgekit.version import __version__

    return {
        "edgekit": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def train(
    opts: TrainOptions, out: str | Path, show_progress: bool = False, force: bool = False
) -> tuple[Any, Any]:
    """Train `opts.model`, save the checkpoint at `out`; return (checkpoint, TrainResult).

    An existing checkpoint at `out` is replaced (retraining); anything else there is refused unless
    `force`, so a mistyped --out never deletes a user's files.
    """
    from edgekit.errors import InputError
    from edgekit.files import check_writable
    from edgekit.models import get_model
    from edgekit.training.checkpoint import METADATA, save_checkpoint
    from edgekit.training.loop import resolve_device, seed_everything
    from edgekit.training.recipes import RECIPES, config_dict

    entry = get_model(opts.model)
    opts.validate()
    check_writable(out)
    target = Path(out)
    if target.exists() and not force and not (target / METADATA).is_file():
        raise InputError(
            f"{target} exists and is not an edgekit checkpoint; choose another --out "
            "or pass --force to replace it"
        )
    device = resolve_device(opts.device)
    seed_everything(opts.seed)
    result = RECIPES[opts.model](opts, device, show_progress)
    options = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in dataclasses.asdict(result.options).items()
    }
    meta = {
        "model": entry.name,
        "task": entry.task,
        "config": config_dict(result.config),
        "labels": result.labels,
        "vocab": result.vocab,
        "preprocess": result.preprocess,
        "metrics": result.metrics,
        "data": result.data,
        "training": options,
        "versions": library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **result.extra,
    }
    return save_checkpoint(out, result.module.cpu(), meta), result


__all__ = ["TrainOptions", "train"]
