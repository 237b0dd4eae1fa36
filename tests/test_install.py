"""An environment with only the runtime extras (no torch) runs classify, predict, generate and check.

It builds a real virtual environment from this checkout (pip, from the package index): ~15 s on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_only_install_runs_bundles(tiny_bundles: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"{ROOT}[cpu,images]"], check=True, capture_output=True)
    freeze = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "torch" not in freeze and "onnxruntime" in freeze
    b = tiny_bundles  # every zoo model, with golden records (a 5-step rollout for charlm)
    from PIL import Image

    Image.new("RGB", (40, 40), (9, 99, 199)).save(tmp_path / "x.png")
    ek = str(venv / "bin" / "edgekit")
    for args in (
        ["classify", str(b["cnn"]), str(tmp_path / "x.png")],
        ["predict", str(b["linear"]), "25,3"],
        ["generate", str(b["charlm"]), "--max-new-tokens", "10", "--seed", "1"],
        *(["check", str(bundle)] for bundle in b.values()),  # golden records replayed, no torch
    ):
        out = subprocess.run([ek, *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    # what needs torch says which extra to install, in one line
    for args in (["train", "linear"], ["export", str(b["cnn"])], ["verify", str(b["cnn"])]):
        out = subprocess.run([ek, *args], capture_output=True, text=True)
        assert out.returncode == 2, out.stderr
        assert (
            out.stderr.strip() == "error: this command needs 'torch', which is not installed: "
            "pip install 'edgekit-ml[train]'"
        )
