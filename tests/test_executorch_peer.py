"""The ExecuTorch (XNNPACK) peer steps the charlm as torch does: same greedy tokens, same logits."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.executorch_peer import available, executorch_peers, greedy_step
from tests.conftest import train_tiny

REASON = available()
# executorch's import and lowering warnings are filtered inside the peer (by message), since
# available() imports it at collection time, before any pytestmark filter applies
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"{REASON} (optional: make executorch)")
STEPS = 20


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_executorch_steps_as_torch_does(cell: str, tmp_path: Path) -> None:
    import torch

    ckpt = train_tiny("charlm", tmp_path / "ck", cell=cell, layers=2)  # 2 layers: the [x, h] path
    path = ckpt.path  # type: ignore[attr-defined]
    lm = ckpt.build()  # type: ignore[attr-defined]
    step = greedy_step(path, 1, threads=1)
    tokens = torch.zeros(1, 1, dtype=torch.long)  # both start from token 0 and zero state
    state = None
    ours, theirs = [], []
    with torch.no_grad():
        for _ in range(STEPS):
            et_logits = step()
            logits, state = lm(tokens, state)  # the CharLM's own forward, T = 1
            tokens = logits.argmax(-1)  # (1, 1)
            ours.append(int(et_logits.argmax()))
            theirs.append(int(tokens))
    assert ours == theirs
    torch.testing.assert_close(et_logits, logits, atol=1e-4, rtol=1e-4)


def test_the_peer_rows_line_up_with_edgekits_step_rows(tmp_path: Path) -> None:
    path = train_tiny("charlm", tmp_path / "ck").path  # type: ignore[attr-defined]
    cases = executorch_peers(path, [1, 3], threads=1)
    assert [(c.backend, c.name, c.batch, c.precision) for c in cases] == [
        ("executorch-xnnpack", "step bound B=1", 1, "fp32"),
        ("executorch-xnnpack", "step bound B=3", 3, "fp32"),
    ]
    for case in cases:
        assert tuple(case.call().shape)[:2] == (case.batch, 1)  # logits (B, 1, V)


def test_the_threadpool_is_not_resized_under_a_loaded_program(tmp_path: Path) -> None:
    """XNNPACK keeps the pool a method was loaded under: resizing it then would free that pool."""
    path = train_tiny("charlm", tmp_path / "ck").path  # type: ignore[attr-defined]
    step = greedy_step(path, 1, threads=1)
    with pytest.raises(RuntimeError, match="still alive"):
        greedy_step(path, 1, threads=2)
    step()  # still steps on its pool
    del step
    greedy_step(path, 1, threads=2)()  # nothing loaded under the old size remains
    greedy_step(path, 1, threads=1)()
