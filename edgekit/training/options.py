"""Training options shared by every model; per-model defaults fill what the user leaves unset."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from edgekit.errors import InputError


@dataclass(frozen=True)
class TrainOptions:
    model: str
    data: Path | None = None  # None: the model's built-in data set
    epochs: int | None = None  # None: the model's default
    lr: float | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str = "cpu"
    # charlm
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 256
    embed: int = 0  # 0: one-hot input
    seq_len: int = 35  # characters per training window (the seeds' num_steps)
    max_chars: int | None = (
        None  # use only the first N characters of the corpus (tests, quick runs)
    )
    # images
    image_size: int = 128  # cnn input side
    samples: int = 240  # size of the synthetic image set when no --data is given
    # rowlstm
    rowlstm_hidden: int = 100

    def with_defaults(self, epochs: int, lr: float, batch_size: int) -> TrainOptions:
        opts = replace(
            self,
            epochs=self.epochs if self.epochs is not None else epochs,
            lr=self.lr if self.lr is not None else lr,
            batch_size=self.batch_size if self.batch_size is not None else batch_size,
        )
        opts.validate()
        return opts

    def validate(self) -> None:
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**32):
            raise InputError(f"--seed must be an integer 0 <= seed < 2**32, got {self.seed!r}")
        checks = [
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--layers", self.layers),
            ("--hidden", self.hidden),
            ("--seq-len", self.seq_len),
            ("--image-size", self.image_size),
            ("--samples", self.samples),
        ]
        for flag, value in checks:
            if value is not None and value <= 0:
                raise InputError(f"{flag} must be a positive integer, got {value}")
        if self.max_chars is not None and self.max_chars <= 0:
            raise InputError(f"--max-chars must be a positive integer, got {self.max_chars}")
        if self.lr is not None and not (self.lr > 0 and self.lr != float("inf")):
            raise InputError(f"--lr must be a positive number, got {self.lr}")
        if self.embed < 0:
            raise InputError(f"--embed must be 0 (one-hot) or a positive width, got {self.embed}")
        if self.device not in ("cpu", "cuda"):
            raise InputError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.image_size < 16:
            raise InputError(
                f"--image-size must be at least 16 (4 pooling stages), got {self.image_size}"
            )
