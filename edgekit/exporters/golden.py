"""Golden records: reference cases from torch, written into the bundle at export time.

`edgekit check` replays them on any backend without torch or the checkpoint (runtimes/golden.py).
The file `golden.npz` (numpy arrays, loaded with allow_pickle=False) holds torch's outputs for every
shape case parity used, real inputs with their outputs, and for recurrent models a greedy rollout:
the prompt, the tokens torch chose, its logits at every step and its final state. Random inputs are
not stored: they are regenerated from a seed and checked against a recorded sha256, which keeps the
file small (a few hundred KB at most for the zoo).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from edgekit.bundle.parts import Golden, GoldenCase
from edgekit.exporters.check import SHAPE_CASES, rollout_start, size_label
from edgekit.exporters.plan import Plan
from edgekit.rollout import trace
from edgekit.runtimes.base import Backend
from edgekit.runtimes.golden import inputs_digest

GOLDEN = "golden.npz"
REAL_INPUT_BYTES = 64 << 10  # real inputs kept per case (float16 when float), at least one row


def _shrink(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Real inputs within REAL_INPUT_BYTES: fewer rows, floats as float16 (then back to float32,
    so the reference outputs are computed on exactly the values stored)."""
    rows = next(iter(feeds.values())).shape[0]
    per_row = sum(
        v.nbytes // max(v.shape[0], 1) // (2 if v.dtype.kind == "f" else 1) for v in feeds.values()
    )
    keep = max(1, min(rows, REAL_INPUT_BYTES // max(per_row, 1)))
    return {
        k: v[:keep].astype(np.float16).astype(v.dtype) if v.dtype.kind == "f" else v[:keep]
        for k, v in feeds.items()
    }


def write_golden(bundle: Path, plan: Plan, reference: Backend, steps: int) -> Golden:
    """Write GOLDEN into `bundle`; return its manifest record."""
    contract = plan.contract
    arrays: dict[str, np.ndarray] = {}
    cases: list[GoldenCase] = []
    seen: list[dict[str, int]] = []
    for i, (at, kind) in enumerate(SHAPE_CASES):
        sizes = contract.sizes(at=at)
        if sizes in seen:
            continue
        seen.append(sizes)
        seed = 20_000 + i
        feeds = contract.feeds(sizes, np.random.default_rng(seed))
        outputs = reference.run(feeds)
        key = f"case{len(cases)}"
        arrays |= {f"{key}/out/{n}": np.asarray(v) for n, v in outputs.items()}
        cases.append(
            GoldenCase(
                f"{kind} {size_label(contract, sizes)}".strip(),
                key,
                sizes=sizes,
                seed=seed,
                inputs_sha256=inputs_digest(feeds),
            )
        )
    for label, real in plan.real:  # the zoo's real inputs: batch first
        kept = _shrink(real)
        rows = next(iter(kept.values())).shape[0]
        feeds = {**contract.zero_state(rows), **kept}
        outputs = reference.run(feeds)
        key = f"case{len(cases)}"
        arrays |= {f"{key}/in/{n}": v for n, v in feeds.items()}
        arrays |= {f"{key}/out/{n}": np.asarray(v) for n, v in outputs.items()}
        cases.append(GoldenCase(f"{label.split(' (')[0]} ({rows} stored)", key))
    rollout_steps = None
    if contract.state and contract.token_input is not None and steps > 0:
        prompt, context, rollout_steps = rollout_start(plan, np.random.default_rng(1234), steps)
        arrays |= _greedy_record(reference, prompt, rollout_steps, context)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # (numpy stubs: allow_pickle)
    (bundle / GOLDEN).write_bytes(buffer.getvalue())
    return Golden(GOLDEN, tuple(cases), rollout_steps, len(buffer.getvalue()))


def _greedy_record(
    reference: Backend, prompt: np.ndarray, steps: int, context: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The reference's own greedy rollout: tokens chosen, logits after every call, final state,
    and the context it read."""
    run = trace(reference.stepper(1), prompt, steps, every_state=False, context=context)
    return {
        "rollout/prompt": run.prompt,
        "rollout/tokens": run.tokens,
        "rollout/logits": run.logits,  # (steps + 1, V)
        **{f"rollout/state/{name}": value for name, value in run.states[-1].items()},
        **{f"rollout/context/{name}": value for name, value in context.items()},
    }
