"""The README runs as written: the tiny demo first (the setup command's job, with DEMO=tiny), then
every `bash` and `python` block in order, on a copy of the checkout, in the environment `make` built.

A block preceded by `<!-- readme-test: skip: WHY -->` is not run (the setup commands themselves);
`<!-- readme-test: gpu -->` marks blocks that need an NVIDIA GPU with TensorRT, skipped with that
reason on other machines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"<!-- readme-test: (skip|gpu)(?::\s*(.*?))?\s*-->")
GPU_REASON = "needs an NVIDIA GPU with onnxruntime-gpu and TensorRT"


@dataclass(frozen=True)
class Block:
    line: int  # where the block starts in README.md
    lang: str
    code: str
    skip: str | None  # why the block does not run, or None


def readme_blocks(text: str) -> list[Block]:
    """The fenced `bash` and `python` blocks, each with the marker that precedes it, if any."""
    lines = text.splitlines()
    blocks, mark, i = [], None, 0
    while i < len(lines):
        found = MARK.search(lines[i])
        if found:
            mark = GPU_REASON if found.group(1) == "gpu" else (found.group(2) or "marked skip")
        elif lines[i].startswith("```"):
            lang, start, body = lines[i][3:].strip(), i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if lang in ("bash", "python"):
                blocks.append(Block(start, lang, "\n".join(body) + "\n", mark))
            mark = None
        elif lines[i].strip():
            mark = None  # a marker applies to the block right after it
        i += 1
    return blocks


BLOCKS = readme_blocks((ROOT / "README.md").read_text())


def _gpu_available() -> bool:
    import importlib.util

    import onnxruntime

    return (
        "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        and importlib.util.find_spec("tensorrt") is not None
    )


def _environment() -> dict[str, str]:
    """The environment of `source .venv/bin/activate`: the venv running these tests comes first."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = sys.prefix
    env.pop("PYTHONPATH", None)
    return env


def _checkout_files() -> list[str]:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell the checkout's files from generated ones")
    return [f for f in listed.stdout.splitlines() if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout with the test's environment as its .venv, after `make demo DEMO=tiny`."""
    if shutil.which("bash") is None or shutil.which("git") is None:
        pytest.skip("the README's commands need bash and git")
    root = tmp_path_factory.mktemp("clone")
    for name in _checkout_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    (root / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    demo = subprocess.run(
        ["bash", "scripts/demo.sh", "runs"],
        cwd=root,
        env={**_environment(), "DEMO": "tiny"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    return root


def test_the_readme_has_runnable_blocks_and_marks_the_gpu_ones() -> None:
    langs = [b.lang for b in BLOCKS if b.skip is None]
    assert langs.count("bash") >= 5 and langs.count("python") >= 2
    assert any(b.skip == GPU_REASON for b in BLOCKS)
    assert any("make demo" in b.code and b.skip for b in BLOCKS)


def test_the_readme_speaks_of_the_product_not_of_where_it_was_built() -> None:
    text = (ROOT / "README.md").read_text().lower()
    for phrase in ("workplace", "was not lent", "this machine class", "this work "):
        assert phrase not in text, phrase


def test_the_block_collector_reads_markers_and_fences() -> None:
    text = "<!-- readme-test: gpu -->\n```bash\nnvidia-smi\n```\n\n```python\nprint(1)\n```\n```\nx\n```"
    blocks = readme_blocks(text)
    assert [(b.lang, b.code, b.skip) for b in blocks] == [
        ("bash", "nvidia-smi\n", GPU_REASON),
        ("python", "print(1)\n", None),
    ]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b.line}-{b.lang}" for b in BLOCKS])
def test_readme_block_runs_as_written(block: Block, clone: Path) -> None:
    if block.skip == GPU_REASON and _gpu_available():
        pass  # the machine has what the block needs: run it
    elif block.skip is not None:
        pytest.skip(f"README line {block.line}: {block.skip}")
    script = clone / f".readme-block-{block.line}.{'sh' if block.lang == 'bash' else 'py'}"
    script.write_text(block.code)
    command = ["bash", "-euo", "pipefail", str(script)]
    if block.lang == "python":
        command = [sys.executable, str(script)]
    done = subprocess.run(
        command, cwd=clone, env=_environment(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (
        f"README.md line {block.line} failed (exit {done.returncode}):\n{block.code}\n"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )
