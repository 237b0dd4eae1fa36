"""The train loop shared by every model: seeded, with a progress bar showing the running loss."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from edgekit.errors import InputError
from edgekit.progress import progress_bar

Batch = tuple[Any, torch.Tensor]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu"
        )
    return torch.device(device)


def fit(
    model: torch.nn.Module,
    batches: Callable[[int], Iterable[Batch]],  # epoch -> batches of (inputs, targets)
    steps_per_epoch: int,
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],  # (model output, targets) -> loss
    optimizer: torch.optim.Optimizer,
    epochs: int,
    show_progress: bool,
    clip_grad: float | None = None,
    forward: Callable[[torch.nn.Module, Any], Any] | None = None,
) -> list[float]:
    """Train in place; return the mean loss of each epoch."""
    call = forward or (lambda m, x: m(x))
    history = []
    model.train()
    # the bar shows the running loss (mean of the last 50 steps); the summary's train_loss is the
    # last epoch's mean, so the two differ while the loss falls
    with progress_bar(
        epochs * steps_per_epoch, "training", show_progress, metric="running loss"
    ) as advance:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for inputs, targets in batches(epoch):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(call(model, inputs), targets)
                if not torch.isfinite(loss):
                    raise InputError(
                        f"training diverged (loss {loss.item()}) at epoch {epoch + 1}; "
                        "try a smaller --lr"
                    )
                loss.backward()
                if clip_grad is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
                optimizer.step()
                total += loss.item()
                count += 1
                advance(loss.item())
            history.append(total / max(count, 1))
    model.eval()
    return history
