"""`edgekit export --module FILE.py:FACTORY`: a user's own module from the command line.

The factory takes no arguments and returns a dict: `module` and `example_inputs`, plus any keyword
of `edgekit.export` that describes the I/O (input_names, output_names, dynamic_axes, state_pairs,
axes, int_ranges, task, labels, vocab, preprocess). `--weights` loads a safetensors state dict into
the module first (strictly: every key and shape must match). The file's folder goes on the import
path, as Python does for a script, so it may import its siblings. The bundle's manifest records the
factory and the weights (source.factory, source.weights), so verify, quantize and bench rebuild the
torch reference from them without another word from the user.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from edgekit.errors import InputError
from edgekit.exporters.module_io import Declarations
from edgekit.exporters.plan import Plan, plan_from_module

DESCRIPTION_KEYS = tuple(f.name for f in fields(Declarations))  # what a factory may return


def load_factory(spec: str) -> Any:
    """`path/to/file.py:name` -> the callable `name` defined in that file."""
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise InputError(f"--module takes FILE.py:FACTORY, got {spec!r}")
    path = Path(path_text)
    if not path.is_file() or path.suffix != ".py":
        raise InputError(f"--module: {path} is not a Python file")
    folder = str(path.resolve().parent)
    if folder not in sys.path:  # its sibling modules import as they would for `python FILE.py`
        sys.path.insert(0, folder)
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    loader_spec = importlib.util.spec_from_file_location(f"edgekit_user_{digest}", path)
    if loader_spec is None or loader_spec.loader is None:
        raise InputError(f"--module: cannot import {path}")
    code = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(code)
    except Exception as exc:  # the user's file: report its own error in one line
        raise InputError(
            f"--module: importing {path} failed: {type(exc).__name__}: {exc}"
        ) from None
    factory = getattr(code, name, None)
    if not callable(factory):
        found = sorted(n for n, v in vars(code).items() if callable(v) and not n.startswith("_"))
        raise InputError(f"--module: {path} defines no function {name!r} (it defines: {found})")
    return factory


def plan_from_factory(spec: str, weights: Path | None = None) -> Plan:
    factory = load_factory(spec)
    try:
        made = factory()
    except Exception as exc:  # the user's factory: its own error, in one line
        raise InputError(f"--module: {spec}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(made, dict) or "module" not in made or "example_inputs" not in made:
        raise InputError(
            f"--module: {spec}() must return a dict with 'module' and 'example_inputs' (and any "
            f"of {', '.join(DESCRIPTION_KEYS)}), got {type(made).__name__}"
        )
    unknown = sorted(set(made) - {"module", "example_inputs", *DESCRIPTION_KEYS})
    if unknown:
        raise InputError(
            f"--module: {spec}() returned unknown keys {unknown}; known: {', '.join(DESCRIPTION_KEYS)}"
        )
    module = made.pop("module")
    if weights is not None:
        load_weights(module, weights)
    plan = plan_from_module(module, made.pop("example_inputs"), Declarations(**made))
    path, _, name = spec.rpartition(":")
    source = plan.described.source
    assert source is not None  # plan_from_module records the module's digest
    recorded = dataclasses.replace(
        source,
        factory=f"{Path(path).resolve()}:{name}",
        weights=None if weights is None else str(Path(weights).resolve()),
    )
    plan.described = dataclasses.replace(plan.described, source=recorded)
    return plan


def load_weights(module: Any, path: Path) -> None:
    """Load a safetensors state dict into `module`; any mismatch is one line naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise InputError(f"--weights not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"--weights {path} is not a safetensors file ({exc})") from None
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"missing {missing[:5]}" if missing else "",
            f"unexpected {unexpected[:5]}" if unexpected else "",
            f"shapes differ: {shapes[:3]}" if shapes else "",
        ]
        raise InputError(
            f"--weights {path} does not fit the module: " + "; ".join(p for p in parts if p)
        )
    module.load_state_dict(state)
