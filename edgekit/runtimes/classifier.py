"""Classifier and Regressor: the task APIs for image and tabular bundles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.runtimes.base import Backend
from edgekit.runtimes.golden import SelfCheck
from edgekit.runtimes.text_input import TextInput


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # probability of `label`
    top_k: list[tuple[str, float]]  # the k most likely labels, best first


class _Task(SelfCheck):
    task = "generic"

    def __init__(self, backend: Backend, manifest: Manifest | Mapping[str, Any]) -> None:
        self.backend = backend
        self.manifest = manifest = Manifest.for_task(self.task, backend.contract, manifest)
        self.input = backend.contract.inputs[0]
        self.output = backend.contract.outputs[0].name
        integer = any(np.issubdtype(np.dtype(t.dtype), np.integer) for t in backend.contract.inputs)
        self.text = TextInput(backend.contract, manifest.vocab) if integer else None

    @property
    def device(self) -> str:
        return self.backend.device

    def prepare(self, x: Any) -> np.ndarray:
        """Images (paths, PIL, uint8 arrays), a float batch, or feature rows -> the model's input."""
        rank = len(self.input.shape)
        if isinstance(x, np.ndarray) and x.dtype != np.uint8:
            arr = x.astype(np.float32, copy=False)
            return arr[None] if arr.ndim == rank - 1 else arr
        spec = self.manifest.preprocess
        if spec is None:  # tabular rows
            try:
                arr = np.asarray(x, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise InputError(f"feature rows must be numbers ({exc})") from None
            return arr[None] if arr.ndim == 1 else arr
        from edgekit.preprocess import preprocess_images

        if isinstance(x, (str, Path)) or not isinstance(x, Sequence | np.ndarray):
            items: Sequence[Any] = [x]
        elif isinstance(x, np.ndarray):
            items = list(x) if x.ndim == 4 else [x]  # uint8 NHWC batch, or one HW(C) image
        else:
            items = x
        if len(items) == 0:
            raise InputError("no images given")
        try:
            return preprocess_images(items, dict(spec))
        except (
            Exception
        ) as exc:  # any decoder failure (corrupt file, decompression bomb): bad input
            if isinstance(exc, InputError):
                raise
            raise InputError(f"cannot read image: {exc}") from None

    def raw(self, x: Any) -> np.ndarray:
        """The model's first output for `x`: images, feature rows, or (token models) texts or ids."""
        if self.text is not None:
            return self.text.run(self.backend, x, self.output)
        return self.backend.run({self.input.name: self.prepare(x)})[self.output]


class Classifier(_Task):
    task = "classify"

    @property
    def labels(self) -> list[str]:
        labels = self.manifest.labels
        return list(labels) if labels else [str(i) for i in range(self._classes())]

    def _classes(self) -> int:
        last = self.backend.contract.outputs[0].shape[-1]
        return 2 if self.manifest.head == "probability" else int(last)

    def predict_proba(self, x: Any) -> np.ndarray:
        """(N, C) class probabilities."""
        out = self.raw(x).astype(np.float64)
        if self.manifest.head == "probability":  # one sigmoid output: P(class 1)
            p1 = out[:, 0]
            return np.stack([1 - p1, p1], axis=1)
        z = out - out.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: Any, top_k: int = 1) -> list[Prediction]:
        if top_k < 1:
            raise InputError(f"top_k must be >= 1, got {top_k}")
        probs = self.predict_proba(x)
        labels = self.labels
        k = min(top_k, probs.shape[1])
        results = []
        for row in probs:
            best = np.argsort(-row, kind="stable")[:k]
            ranked = [(labels[i], float(row[i])) for i in best]
            results.append(Prediction(ranked[0][0], ranked[0][1], ranked))
        return results


class Regressor(_Task):
    task = "regress"

    def predict(self, rows: Any) -> np.ndarray:
        """(N,) predictions for N feature rows."""
        return self.raw(rows)[:, 0]
