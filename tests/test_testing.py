"""edgekit.testing in a user's own suite: plain asserts, the parity table as the message."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import edgekit
from edgekit.testing import assert_parity, assert_rollout
from tests.user_modules import models as m


@pytest.fixture(scope="module")
def gru_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    module = m.GRULM().eval()
    out = tmp_path_factory.mktemp("t") / "gru"
    edgekit.export(
        module, (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, m.H)), out,
        input_names=["tokens", "state_in.h"],
        dynamic_axes={"tokens": {0: "batch", 1: "time"}, "output.logits": {0: "batch", 1: "time"},
                      "state_in.h": {1: "batch"}, "output.h": {1: "batch"}},
        state_pairs=[("state_in.h", "output.h")], task="generate", vocab=m.CHARS, steps=20,
    )  # fmt: skip
    return module, out


def test_a_matching_module_passes_both_assertions(gru_bundle) -> None:  # type: ignore[no-untyped-def]
    module, bundle = gru_bundle
    assert assert_parity(module, bundle).passed
    assert assert_rollout(module, bundle, steps=100, prompt=[1, 2, 3]).rollout.steps == 100


def test_a_changed_module_fails_with_the_table_as_the_message(gru_bundle) -> None:  # type: ignore[no-untyped-def]
    module, bundle = gru_bundle
    changed = m.GRULM().eval()
    changed.load_state_dict(module.state_dict())
    with torch.no_grad():
        changed.head.weight.mul_(1.01)
    with pytest.raises(AssertionError) as info:
        assert_parity(changed, bundle)
    message = str(info.value)
    assert message.startswith(f"parity failed for {bundle}:") and "max abs" in message
    assert "FAIL" in message
    with pytest.raises(AssertionError, match="rollout failed"):
        assert_rollout(changed, bundle, steps=50)


def test_a_checkpoint_as_the_reference(tiny_checkpoints: dict[str, Path], tiny_bundles) -> None:  # type: ignore[no-untyped-def]
    report = assert_parity(tiny_checkpoints["charlm"], tiny_bundles["charlm"], steps=10)
    assert any(c.case.startswith("real text") for c in report.cases)
