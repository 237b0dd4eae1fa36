"""One recipe per zoo model: data, default hyperparameters, loss and held-out metric."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edgekit.data import digits as digits_data
from edgekit.data import images as image_data
from edgekit.data import tabular, text
from edgekit.errors import InputError
from edgekit.models import get_model
from edgekit.preprocess import IMAGENET_MEAN, IMAGENET_STD, image_spec
from edgekit.training.loop import fit
from edgekit.training.options import TrainOptions


@dataclass
class TrainResult:
    module: torch.nn.Module
    config: Any
    options: TrainOptions  # with defaults filled in
    metrics: dict[str, float]
    data: dict[str, Any]
    labels: list[str] | None = None
    vocab: list[str] | None = None
    preprocess: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _shuffled_batches(n: int, batch: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for start in range(0, n, batch):
        yield order[start : start + batch]


def _accuracy(logits_or_probs: torch.Tensor, y: torch.Tensor) -> float:
    if logits_or_probs.shape[1] == 1:  # sigmoid head: P(class 1)
        pred = (logits_or_probs[:, 0] >= 0.5).long()
    else:
        pred = logits_or_probs.argmax(dim=1)
    return float((pred == y).float().mean())


def _classification_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if out.shape[1] == 1:  # the seed's sigmoid + BCE head
        return F.binary_cross_entropy(out[:, 0], y.float())
    return F.cross_entropy(out, y)


# --- linear and logistic regression ---------------------------------------------------------------


def train_tabular(opts: TrainOptions, device: torch.device, show: bool) -> TrainResult:
    entry = get_model(opts.model)
    is_linear = entry.task == "regress"  # linear regression; logistic regression classifies
    table = tabular.read_csv_table(opts.data) if opts.data else tabular.builtin_table(opts.model)
    if not is_linear and not set(np.unique(table.y)) <= {0.0, 1.0}:
        raise InputError("logistic regression needs a 0/1 target in the last column")
    # full-batch gradient descent, as the seed does
    opts = opts.with_defaults(
        epochs=2000 if is_linear else 1000, lr=0.1 if is_linear else 0.5, batch_size=len(table.x)
    )
    std = table.x.std(axis=0)
    config = entry.config_class()(
        in_features=table.x.shape[1],
        feature_mean=tuple(float(m) for m in table.x.mean(axis=0)),
        feature_std=tuple(float(s) if s > 0 else 1.0 for s in std),
    )
    module = entry.build(config).to(device)
    x = torch.from_numpy(table.x).to(device)
    y = torch.from_numpy(table.y).to(device)
    n = len(x)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in _shuffled_batches(n, opts.batch_size or n, opts.seed, epoch):
            yield x[idx], y[idx]

    if is_linear:

        def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return F.mse_loss(out[:, 0], t)
    else:

        def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy(out[:, 0], t)

    steps = math.ceil(n / (opts.batch_size or n))
    optimizer = torch.optim.SGD(module.parameters(), lr=opts.lr or 0.1)
    history = fit(module, batches, steps, loss, optimizer, opts.epochs or 1, show)
    with torch.no_grad():
        out = module(x)
    # The seed tables have 7-8 rows: there is no held-out split; metrics are on the whole table.
    metrics = {"train_loss": history[-1], "rows": float(n)}
    if is_linear:
        metrics["mse"] = float(F.mse_loss(out[:, 0], y))
    else:
        metrics["accuracy"] = _accuracy(out, y.long())
    labels = None if is_linear else ["stays in", "goes out"]
    return TrainResult(
        module,
        config,
        opts,
        metrics,
        {**table.description, "columns": table.columns},
        labels=labels,
        extra={"columns": table.columns},
    )


# --- image classifiers ------------------------------------------------------------------------------


def _eval_classifier(
    module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int
) -> float:
    with torch.no_grad():
        outs = [module(x[i : i + batch]) for i in range(0, len(x), batch)]
    return _accuracy(torch.cat(outs), y)


def train_cnn(opts: TrainOptions, device: torch.device, show: bool) -> TrainResult:
    opts = opts.with_defaults(epochs=20, lr=1e-3, batch_size=32)
    if opts.data:
        dataset = image_data.read_image_folder(opts.data)
    else:
        dataset = image_data.synthetic_shapes(opts.samples, opts.image_size, opts.seed)
    spec = image_spec(opts.image_size, "RGB", IMAGENET_MEAN, IMAGENET_STD)
    n = len(dataset.images)
    order = np.random.default_rng(opts.seed).permutation(n)
    n_val = max(1, n // 5)
    val_idx, train_idx = order[:n_val], order[n_val:]
    if len(train_idx) == 0:
        raise InputError(f"{n} image(s) is too few to split into training and validation sets")
    entry = get_model("cnn")
    config = entry.config_class()(num_classes=len(dataset.classes), image_size=opts.image_size)
    module = entry.build(config).to(device)
    labels = torch.tensor(dataset.labels)
    aug_rng = random.Random(opts.seed)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in _shuffled_batches(len(train_idx), opts.batch_size or 32, opts.seed, epoch):
            chosen = train_idx[idx]
            arr = image_data.batch_arrays([dataset.images[i] for i in chosen], spec, aug_rng)
            yield torch.from_numpy(arr).to(device), labels[chosen].to(device)

    steps = math.ceil(len(train_idx) / (opts.batch_size or 32))
    optimizer = torch.optim.Adam(module.parameters(), lr=opts.lr or 1e-3)
    history = fit(module, batches, steps, _classification_loss, optimizer, opts.epochs or 1, show)
    x_val = torch.from_numpy(
        image_data.batch_arrays([dataset.images[i] for i in val_idx], spec, None)
    )
    acc = _eval_classifier(module, x_val.to(device), labels[val_idx].to(device), 64)
    desc = {**dataset.description, "split_seed": opts.seed, "val_fraction": 0.2}
    return TrainResult(
        module,
        config,
        opts,
        {
            "train_loss": history[-1],
            "val_accuracy": acc,
            "skipped_files": float(len(dataset.skipped)),
        },
        desc,
        labels=dataset.classes,
        preprocess=spec,
    )


def train_digits(opts: TrainOptions, device: torch.device, show: bool) -> TrainResult:
    opts = opts.with_defaults(epochs=10, lr=2e-3, batch_size=32)
    data = digits_data.read_npz(opts.data) if opts.data else digits_data.builtin_digits(opts.seed)
    if opts.model == "lenet" and data.x_train.shape[1:] not in ((28, 28), (32, 32)):
        raise InputError(f"lenet takes 28x28 or 32x32 images, got {data.x_train.shape[1:]}")
    # x / 255, as the seed; rowlstm too takes (N, 1, H, W) and reads one image row per time step
    spec = image_spec(data.x_train.shape[1], "L", (0.0,), (1.0,))
    entry = get_model(opts.model)
    size = data.x_train.shape[1]
    if opts.model == "lenet":
        config = entry.config_class()(num_classes=int(data.y_train.max()) + 1, image_size=size)
    else:
        config = entry.config_class()(
            input_size=data.x_train.shape[2],
            hidden=opts.rowlstm_hidden,
            num_classes=int(data.y_train.max()) + 1,
        )
    module = entry.build(config).to(device)

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.float32)[:, None] / 255.0).to(device)  # (N, 1, H, W)

    x_tr, y_tr = to_tensor(data.x_train), torch.from_numpy(data.y_train).to(device)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in _shuffled_batches(len(x_tr), opts.batch_size or 32, opts.seed, epoch):
            yield x_tr[idx], y_tr[idx]

    steps = math.ceil(len(x_tr) / (opts.batch_size or 32))
    optimizer = torch.optim.Adam(module.parameters(), lr=opts.lr or 2e-3)
    history = fit(module, batches, steps, _classification_loss, optimizer, opts.epochs or 1, show)
    acc = _eval_classifier(
        module, to_tensor(data.x_test), torch.from_numpy(data.y_test).to(device), 256
    )
    labels = [str(i) for i in range(config.num_classes)]
    return TrainResult(
        module,
        config,
        opts,
        {"train_loss": history[-1], "test_accuracy": acc},
        data.description,
        labels=labels,
        preprocess=spec,
    )


# --- character language models ---------------------------------------------------------------------


def train_charlm(opts: TrainOptions, device: torch.device, show: bool) -> TrainResult:
    opts = opts.with_defaults(epochs=2, lr=3e-3, batch_size=32)
    corpus = text.read_corpus(opts.data) if opts.data else text.builtin_corpus()
    raw = corpus.text[: opts.max_chars] if opts.max_chars else corpus.text
    text.check_corpus(raw, opts.seq_len)
    vocab = text.Vocab.from_text(raw)
    ids = vocab.encode(raw)
    cut = int(len(ids) * 0.95)  # the last 5% is held out
    train_ids, val_ids = ids[:cut], ids[cut:]
    entry = get_model("charlm")
    config = entry.config_class()(
        vocab_size=len(vocab),
        cell=opts.cell,
        layers=opts.layers,
        hidden=opts.hidden,
        embed=opts.embed,
    )
    module = entry.build(config).to(device)
    T, B = opts.seq_len, opts.batch_size or 32
    windows = (len(train_ids) - 1) // T
    steps = max(1, windows // B)
    train_t = torch.from_numpy(train_ids).to(device)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # random non-overlapping windows, a fresh zero state per window (the seeds' random iterator)
        rng = np.random.default_rng([opts.seed, epoch])
        offset = int(rng.integers(0, T))
        starts = offset + T * rng.permutation((len(train_ids) - 1 - offset) // T)
        for k in range(steps):
            s = torch.from_numpy(starts[k * B : (k + 1) * B]).to(device)
            idx = s[:, None] + torch.arange(T + 1, device=device)  # (B, T + 1)
            chunk = train_t[idx]
            yield chunk[:, :-1], chunk[:, 1:]

    def loss(out: tuple[torch.Tensor, Any], target: torch.Tensor) -> torch.Tensor:
        logits = out[0]  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))

    optimizer = torch.optim.Adam(module.parameters(), lr=opts.lr or 3e-3)
    start = time.perf_counter()
    history = fit(module, batches, steps, loss, optimizer, opts.epochs or 1, show, clip_grad=1.0)
    seconds = time.perf_counter() - start
    tokens_per_s = (opts.epochs or 1) * steps * B * T / seconds
    ppl = evaluate_perplexity(module, val_ids, device)
    metrics = {
        "train_loss": history[-1],
        "val_perplexity": ppl,
        "unigram_perplexity": text.unigram_perplexity(train_ids, val_ids, len(vocab)),
        "train_tokens_per_s": tokens_per_s,
    }
    desc = {**corpus.description, "used_chars": len(raw), "val_fraction": 0.05}
    return TrainResult(module, config, opts, metrics, desc, vocab=vocab.chars)


def evaluate_perplexity(
    module: torch.nn.Module, ids: np.ndarray, device: torch.device, chunk: int = 256
) -> float:
    """Perplexity over `ids`, carrying state across chunks (one stream, batch 1)."""
    x = torch.from_numpy(ids).to(device)[None]  # (1, N)
    state, nll, count = None, 0.0, 0
    with torch.no_grad():
        for s in range(0, x.shape[1] - 1, chunk):
            inp, tgt = x[:, s : s + chunk], x[:, s + 1 : s + chunk + 1]
            inp = inp[:, : tgt.shape[1]]
            logits, state = module(inp, state)
            nll += float(F.cross_entropy(logits[0], tgt[0], reduction="sum"))
            count += tgt.shape[1]
    return math.exp(nll / max(count, 1))


RECIPES: dict[str, Callable[[TrainOptions, torch.device, bool], TrainResult]] = {
    "linear": train_tabular,
    "logistic": train_tabular,
    "cnn": train_cnn,
    "lenet": train_digits,
    "rowlstm": train_digits,
    "charlm": train_charlm,
}


def config_dict(config: Any) -> dict[str, Any]:
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }
