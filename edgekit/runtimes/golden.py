"""Replay a bundle's golden records on a backend, torch-free: `edgekit check`, `model.check()`.

Shape cases regenerate their random inputs from the recorded seed (and refuse if the inputs' sha256
differs, which would mean numpy draws differently); real cases carry their inputs. The rollout takes
the path generation takes (prefill, then one-token steps) and is teacher-forced with the tokens torch
chose, so each step's logits compare with torch's at that step;
the final state is compared relative to its own size. The verdict uses the bundle's tolerances.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.directory import Bundle
from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.parity import ParityReport, compare_case, recorded
from edgekit.rollout import Trace, rollout
from edgekit.runtimes.base import Backend


def inputs_digest(feeds: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(feeds):
        h.update(name.encode())
        h.update(np.ascontiguousarray(feeds[name]).tobytes())
    return h.hexdigest()


def replay(
    bundle: str | Path, manifest: Manifest | Mapping[str, Any], backend: Backend
) -> ParityReport:
    manifest = Manifest.of(manifest)
    golden = manifest.golden
    if golden is None:
        raise InputError(
            f"{bundle} has no golden records (it was exported by an older edgekit); re-export it"
        )
    atol, rtol = manifest.tolerance.atol, manifest.tolerance.rtol
    contract = manifest.contract
    arrays = Bundle(Path(bundle), manifest).golden_arrays()
    report = ParityReport("golden (torch at export)", backend.name, atol, rtol)
    # a reduced-precision variant carries its own per-case bound, measured when it was made
    case_atol = manifest.case_atol
    for case in golden.cases:
        if case.seed is not None:
            feeds = contract.feeds(case.sizes or {}, np.random.default_rng(case.seed))
            if inputs_digest(feeds) != case.inputs_sha256:
                raise InputError(
                    "this numpy draws different random inputs than the exporting one did; "
                    f"golden case {case.case!r} cannot be replayed"
                )
        else:
            feeds = _section(arrays, f"{case.key}/in/")
        expected = _section(arrays, f"{case.key}/out/")
        bound = float(case_atol.get(case.case, atol))
        result = compare_case(case.case, feeds, recorded(expected), backend.run, bound, rtol)
        report.cases.append(result)
    if golden.rollout_steps is not None:
        # the path generation takes: prefill, then one-token steps (on the step graph if any)
        report.rollout = rollout(stored_trace(arrays), backend.stepper(1), atol, rtol)
    return report


def _section(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def stored_trace(arrays: Mapping[str, np.ndarray]) -> Trace:
    """Torch's greedy rollout at export, as the golden records keep it: the prompt, the tokens it
    chose, its logits after every call and its final state."""
    prompt, tokens, logits = (arrays[f"rollout/{k}"] for k in ("prompt", "tokens", "logits"))
    kept = dict(arrays)
    return Trace(
        prompt,
        tokens,
        logits,
        [_section(kept, "rollout/state/")],
        _section(kept, "rollout/context/"),
    )


class SelfCheck:
    """`check()` for the task objects `edgekit.load` returns: replay the golden records here."""

    bundle: Path
    manifest: Manifest
    backend: Backend

    def check(self) -> ParityReport:
        return replay(self.bundle, self.manifest, self.backend)
