"""The backend base class: `run` validates feeds against the I/O contract, subclasses implement `_run`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgekit.errors import InputError
from edgekit.iospec import IOContract


class Backend:
    name = "backend"

    def __init__(self, contract: IOContract) -> None:
        self.contract = contract

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_feeds(feeds)
        return self._run(feeds)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError  # abstract: each backend implements the call

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Raise one InputError listing every problem: names, dtypes, ranks, sizes, symbolic dims."""
        problems = []
        expected = {t.name: t for t in self.contract.inputs}
        missing = [n for n in expected if n not in feeds]
        unexpected = [n for n in feeds if n not in expected]
        if missing:
            problems.append(f"missing inputs {missing}")
        if unexpected:
            problems.append(f"unexpected inputs {unexpected} (expected {list(expected)})")
        sizes: dict[str, tuple[int, str]] = {}
        for name, spec in expected.items():
            if name not in feeds:
                continue
            value = feeds[name]
            if not isinstance(value, np.ndarray):
                problems.append(f"{name}: expected a numpy array, got {type(value).__name__}")
                continue
            if value.dtype != np.dtype(spec.dtype):
                problems.append(f"{name}: dtype {value.dtype}, expected {spec.dtype}")
            if value.ndim != len(spec.shape):
                problems.append(
                    f"{name}: shape {value.shape} has rank {value.ndim}, expected rank "
                    f"{len(spec.shape)} {list(spec.shape)}"
                )
                continue
            for axis, (got, want) in enumerate(zip(value.shape, spec.shape, strict=True)):
                if isinstance(want, int) and got != want:
                    problems.append(
                        f"{name}: axis {axis} is {got}, expected {want} {list(spec.shape)}"
                    )
                elif isinstance(want, str):
                    if got < 1:
                        problems.append(f"{name}: axis {axis} ({want}) is {got}, expected >= 1")
                    seen = sizes.setdefault(want, (got, name))
                    if seen[0] != got:
                        problems.append(
                            f"{name}: axis {axis} ({want}) is {got}, but {seen[1]} has {want} = {seen[0]}"
                        )
        if problems:
            raise InputError("invalid inputs: " + "; ".join(problems))
