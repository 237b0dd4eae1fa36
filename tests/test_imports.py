"""The dependency rule, proved in fresh interpreters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import edgekit


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


# The runtime ships alone to devices: nothing in it may import these, at module level or inside a
# function, directly or through the optional-import helper.
FORBIDDEN_IN_RUNTIME = (
    "torch",
    "onnx",
    "onnxscript",
    "edgekit.exporters",
    "edgekit.training",
    "edgekit.models",
    "edgekit.reference",
    "edgekit.bench",
    "edgekit.cli",
)
RUNTIME = Path(edgekit.__file__).parent / "runtimes"
SERVE = RUNTIME.parent / "serve"


def _imported_names(path: Path) -> list[tuple[int, str]]:
    """Every module `path` names in an import statement or a string-import call, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "require", "__import__", "find_spec"):
                found.append((node.lineno, str(node.args[0].value)))
    for node in ast.walk(ast.parse(path.read_text())):  # module tuples handed to import_module
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            for elt in node.value.elts:
                if isinstance(elt, ast.Constant) and str(elt.value).startswith("edgekit."):
                    found.append((node.lineno, str(elt.value)))
    return found


def _forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN_IN_RUNTIME)


def test_the_runtime_imports_no_exporter_training_model_or_torch_code_anywhere() -> None:
    files = sorted(RUNTIME.glob("*.py")) + sorted(SERVE.glob("*.py"))  # the server runs bundles too
    assert len(files) > 5
    bad = [
        f"{path.name}:{line} imports {module}"
        for path in files
        for line, module in _imported_names(path)
        if _forbidden(module)
    ]
    assert not bad, "the runtime must stay torch-free and below exporters:\n" + "\n".join(bad)


def test_the_import_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n    from edgekit.exporters.onnx import x\n    import torch.nn\n"
        "    require('onnx', 'why')\n"
    )
    assert [m for _, m in _imported_names(sample) if _forbidden(m)] == [
        "edgekit.exporters.onnx",
        "torch.nn",
        "onnx",
    ]


def test_every_runtime_module_and_the_backend_registry_load_without_torch() -> None:
    modules = ", ".join(
        [f"edgekit.runtimes.{p.stem}" for p in RUNTIME.glob("*.py")]
        + [f"edgekit.serve.{p.stem}" for p in SERVE.glob("*.py")]
    )
    mods = _modules_after(
        f"import {modules}\nfrom edgekit.runtimes import registry\nregistry.names()"
    )
    assert not (mods & {"torch", "onnx", "onnxscript"}), sorted(mods & {"torch", "onnx"})
    assert not {m for m in mods if _forbidden(m)}


def test_no_module_in_the_package_is_over_350_lines() -> None:
    root = Path(edgekit.__file__).parent
    long = {
        str(p.relative_to(root)): n
        for p in root.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 350
    }
    assert not long, f"split these by job: {long}"
