"""The dependency rule, proved in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_importing_edgekit_and_the_cli_loads_no_heavy_library() -> None:
    mods = _modules_after("import edgekit, edgekit.cli, edgekit.models, edgekit.preprocess")
    heavy = {"torch", "onnx", "onnxscript", "onnxruntime", "safetensors", "sklearn", "PIL"}
    assert not (mods & heavy), f"imported at start-up: {sorted(mods & heavy)}"
