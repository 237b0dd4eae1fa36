"""The export gate, judged both ways on real trained models (benchmarks/parity_grid.py holds the grid).

No false refusals: a briefly trained 2x256 LSTM, whose cell state grows past 100 in a greedy rollout,
and a GRU pass. No false accepts: four deliberate breaks of their exported graphs are refused.
`pytest -m slow` runs the whole grid: every cell, brief and longer training, two seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import parity_grid as grid
from edgekit.exporters import bundle_from_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(checkpoint, exported graph) per cell, trained briefly: the case the old gate refused."""
    root = tmp_path_factory.mktemp("grid")
    out = {}
    for cell in ("lstm", "gru"):
        ckpt = grid.train(cell, "brief", 0, root / cell)
        bundle, manifest = bundle_from_checkpoint(ckpt, root / f"{cell}-bundle")
        assert manifest["parity"]["passed"]
        out[cell] = (ckpt, bundle / "model.onnx")
    return out


def test_a_briefly_trained_lstm_is_accepted_and_its_drift_is_judged_relative(
    trained: dict[str, tuple[Path, Path]],
) -> None:
    ckpt, graph = trained["lstm"]
    passed, note = grid.judge(ckpt, graph)
    assert passed, note
    # the cell state really is large, so its drift is judged against its own size
    manifest = json.loads((graph.parent / "edgekit.json").read_text())
    worst_c, size_c = manifest["parity"]["rollout"]["state_drift"]["state_in.c"]
    assert size_c > 20 and worst_c / size_c < 1e-4


@pytest.mark.parametrize(
    ("label", "cell"),
    [
        (label, cell)
        for label, (_, cells) in grid.BREAKS.items()
        for cell in cells
        if cell in ("lstm", "gru")
    ],
)
def test_every_deliberate_break_is_refused(
    trained: dict[str, tuple[Path, Path]], tmp_path: Path, label: str, cell: str
) -> None:
    ckpt, graph = trained[cell]
    edit, _ = grid.BREAKS[label]
    passed, note = grid.judge(ckpt, grid.broken(graph, edit, tmp_path / "broken.onnx"))
    assert not passed, f"{label} on {cell} was accepted: {note}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("training", list(grid.TRAINING))
@pytest.mark.parametrize("cell", grid.CELLS)
def test_grid_no_false_refusals(tmp_path: Path, cell: str, training: str, seed: int) -> None:
    ckpt = grid.train(cell, training, seed, tmp_path / "ckpt")
    _, manifest = bundle_from_checkpoint(ckpt, tmp_path / "bundle")
    assert manifest["parity"]["passed"]


def _perturb_head(model) -> None:  # type: ignore[no-untyped-def]
    """Only the output layer's weight, x (1 + 1e-2): one layer wrong."""
    import numpy as np
    from onnx import numpy_helper

    head = next(n for n in model.graph.node if n.name == "/lm/head/MatMul")
    init = next(i for i in model.graph.initializer if i.name in head.input)
    scaled = numpy_helper.to_array(init) * np.float32(1.01)
    init.CopyFrom(numpy_helper.from_array(scaled, init.name))


@pytest.mark.parametrize(
    ("cell", "edit", "expected"),
    [
        ("gru", grid.flip_linear_before_reset, "node /lm/rnn/GRU (GRU) in module lm.rnn"),
        ("lstm", _perturb_head, "node /lm/head/MatMul (MatMul) in module lm.head"),
    ],
)
def test_verify_names_the_first_diverging_node(
    trained: dict[str, tuple[Path, Path]], tmp_path: Path, cell: str, edit, expected: str
) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from typer.testing import CliRunner

    from edgekit.cli import app
    from edgekit.manifest import read_manifest, write_manifest

    _, graph = trained[cell]
    bundle = tmp_path / "bundle"
    shutil.copytree(graph.parent, bundle)
    grid.broken(graph, edit, bundle / "model.onnx")
    write_manifest(bundle, read_manifest(bundle, verify=False))  # a consistent, wrong bundle
    result = CliRunner().invoke(app, ["verify", str(bundle), "--steps", "20"])
    assert result.exit_code == 1
    assert f"first diverging node (in torch's order): {expected}" in result.output
