"""What a bundle manifest document may say, checked before anything in it is trusted (torch-free).

One InputError lists every problem: missing keys, wrong types, paths, and an image preprocessing
spec the runtime would not apply as written (edgekit.preprocess.check_image_spec). Every file the
manifest names (the graph, engines, variants, golden records) must be a plain file name inside the
bundle (no separator, no "..", not absolute, not a link) and listed in `files`; `files` itself may
list only plain names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.bundle.dtypes import DTYPES
from edgekit.preprocess import image_spec_problems

TASKS = ("classify", "regress", "generate", "generic")
VARIANT_PRECISIONS = ("int8", "fp16", "bf16")
OPTIMIZATION_LEVELS = ("all", "extended", "basic", "disabled")  # ORT's, as variants name them
WHEN_FULL = ("error", "stop")  # what generation does when a growing state (a KV cache) is full

# key -> (python types it may have, required)
FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "task": ((str,), True),
    "graph": ((str,), True),
    "inputs": ((list,), True),
    "outputs": ((list,), True),
    "state": ((list,), True),
    "files": ((dict,), True),
    "tolerance": ((dict,), True),
    "model": ((dict,), False),
    "axes": ((list,), False),
    "engines": ((list,), False),
    "variants": ((list,), False),
    "golden": ((dict,), False),
    "step_graph": ((dict, type(None)), False),
    "vocab": ((list, type(None)), False),
    "labels": ((list, type(None)), False),
    "preprocess": ((dict, type(None)), False),
    "token_input": ((str, type(None)), False),
    "context": ((list,), False),
    "source": ((dict, type(None)), False),
    "parity": ((dict, type(None)), False),
    "exporter": ((dict, type(None)), False),
}
TENSOR_KEYS = {"name": str, "dtype": str, "shape": list}


def plain_name(name: Any) -> bool:
    """A file name that cannot leave its directory."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and not Path(name).is_absolute()
    )


def named_files(manifest: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(where, name) of every file the manifest makes edgekit open."""
    named = [("graph", manifest.get("graph"))]
    for i, engine in enumerate(manifest.get("engines") or []):
        named.append(
            (f"engines[{i}].file", engine.get("file") if isinstance(engine, dict) else None)
        )
    for i, variant in enumerate(manifest.get("variants") or []):
        named.append(
            (f"variants[{i}].file", variant.get("file") if isinstance(variant, dict) else None)
        )
        if isinstance(variant, dict) and "step_file" in variant:
            named.append((f"variants[{i}].step_file", variant["step_file"]))
    golden = manifest.get("golden")
    if isinstance(golden, dict):
        named.append(("golden.file", golden.get("file")))
    step = manifest.get("step_graph")
    if isinstance(step, dict) and (step.get("used") or "file" in step):
        named.append(("step_graph.file", step.get("file")))
    return named


def problems(manifest: Mapping[str, Any], bundle: Path | None) -> list[str]:
    found = []
    for key, (types, required) in FIELDS.items():
        if key not in manifest:
            if required:
                found.append(f"missing key {key!r}")
        elif not isinstance(manifest[key], types):
            kinds = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            found.append(f"{key} must be {kinds}, got {type(manifest[key]).__name__}")
    if isinstance(manifest.get("task"), str) and manifest["task"] not in TASKS:
        found.append(f"task {manifest['task']!r} is not one of {', '.join(TASKS)}")
    for kind in ("inputs", "outputs"):
        for i, t in enumerate(manifest.get(kind) or []):
            if not isinstance(t, dict):
                found.append(f"{kind}[{i}] must be an object")
                continue
            for k, typ in TENSOR_KEYS.items():
                if not isinstance(t.get(k), typ):
                    found.append(f"{kind}[{i}].{k} must be {typ.__name__}")
            if isinstance(t.get("dtype"), str) and t["dtype"] not in DTYPES:
                found.append(f"{kind}[{i}].dtype {t['dtype']!r} is not one of {sorted(DTYPES)}")
            for d in t.get("shape") or []:
                if not (
                    isinstance(d, str)
                    or (isinstance(d, int) and not isinstance(d, bool) and d >= 0)
                ):
                    found.append(f"{kind}[{i}].shape has {d!r}; dims are names or sizes >= 0")
    for i, s in enumerate(manifest.get("state") or []):
        if (
            not isinstance(s, dict)
            or not isinstance(s.get("input"), str)
            or not isinstance(s.get("output"), str)
        ):
            found.append(f"state[{i}] must name an input and an output")
        elif s.get("when_full", "error") not in WHEN_FULL:
            found.append(f"state[{i}].when_full is {s['when_full']!r}; expected one of {WHEN_FULL}")
    names = {t.get("name") for t in manifest.get("inputs") or [] if isinstance(t, dict)}
    for name in manifest.get("context") or []:
        if name not in names:
            found.append(f"context names {name!r}, which is not an input")
    found += _tolerance_problems("tolerance", manifest.get("tolerance"))
    if isinstance(manifest.get("preprocess"), dict):  # what the runtime applies to images
        found += image_spec_problems(manifest["preprocess"])
    for i, variant in enumerate(manifest.get("variants") or []):
        found += _variant_problems(f"variants[{i}]", variant)
    files = manifest.get("files")
    if isinstance(files, dict):
        for name, info in files.items():
            if not plain_name(name):
                found.append(f"files lists {name!r}, which is not a plain file name in the bundle")
            elif (
                not isinstance(info, dict)
                or not isinstance(info.get("sha256"), str)
                or not isinstance(info.get("bytes"), int)
            ):
                found.append(f"files[{name!r}] must have sha256 and bytes")
    for where, name in named_files(manifest):
        if not plain_name(name):
            found.append(f"{where} {name!r} is not a plain file name inside the bundle")
        elif isinstance(files, dict) and name not in files:
            found.append(f"{where} {name!r} is not listed (and hashed) in files")
        elif bundle is not None and (bundle / name).is_symlink():
            found.append(f"{where} {name!r} is a symbolic link; bundle files must be plain files")
    return found


def _number(v: Any) -> bool:
    """A finite number >= 0 (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf")


def _tolerance_problems(where: str, tol: Any) -> list[str]:
    if not isinstance(tol, dict):
        return [] if where == "tolerance" else [f"{where} must be an object"]
    return [
        f"{where}.{k} must be a finite number >= 0"
        for k in ("atol", "rtol")
        if not _number(tol.get(k))
    ]


def _variant_problems(where: str, variant: Any) -> list[str]:
    """A reduced-precision variant's record: what the loader and `check` read from it."""
    if not isinstance(variant, dict):
        return [f"{where} must be an object"]
    found = []
    if variant.get("precision") not in VARIANT_PRECISIONS:
        found.append(f"{where}.precision must be one of {', '.join(VARIANT_PRECISIONS)}")
    found += _tolerance_problems(f"{where}.tolerance", variant.get("tolerance"))
    if variant.get("optimization", "all") not in OPTIMIZATION_LEVELS:
        found.append(f"{where}.optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}")
    bounds = variant.get("case_atol", {})
    if not isinstance(bounds, dict) or not all(_number(v) for v in bounds.values()):
        found.append(f"{where}.case_atol must map case names to finite numbers >= 0")
    gates = variant.get("gates", {})
    speed = gates.get("speed", {}) if isinstance(gates, dict) else None
    if not isinstance(speed, dict) or not _number(speed.get("ratio", 1.0)):
        found.append(f"{where}.gates.speed.ratio must be a finite number >= 0")
    return found
