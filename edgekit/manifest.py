"""The bundle manifest (`edgekit.json`): everything a runtime needs, so apps hard-code no names or shapes.

Torch-free: the runtime reads bundles with this module. Schema (version 1):

    schema, schema_version      "edgekit.bundle", 1
    task                        "classify" | "regress" | "generate"
    model                       {"name", "config"}
    graph                       file name of the fp32 ONNX graph ("model.onnx")
    inputs / outputs            [{"name", "dtype", "shape"}]; symbolic dims are strings ("batch", "time")
    state                       generate only: [{"input", "output", "shape", "batch_axis", "init"}]
    head                        classify: "probability" (one sigmoid output, P(class 1)) | "logits"
    labels / vocab / preprocess as recorded in the checkpoint
    files                       {name: {"sha256", "bytes"}} for every file in the bundle but this one
    source                      {"checkpoint", "sha256"} of the source checkpoint (or module hash)
    exporter                    {"name", "opset", "attempts"}
    tolerance                   {"atol", "rtol"}
    parity                      the parity report measured at export
    versions                    tool versions at export
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgekit.bundle_schema import problems
from edgekit.errors import InputError
from edgekit.files import read_versioned_json, sha256_file

MANIFEST = "edgekit.json"
SCHEMA = "edgekit.bundle"
SCHEMA_VERSION = 1


def write_manifest(bundle_dir: Path, manifest: dict[str, Any]) -> None:
    """Record the hash of every file in `bundle_dir`, then write the manifest."""
    files = {}
    for f in sorted(p for p in bundle_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        if f.name == MANIFEST:
            continue
        files[f.name] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    manifest["files"] = files
    tmp = bundle_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, bundle_dir / MANIFEST)  # atomic: a reader never sees a half-written manifest


def read_manifest(bundle_dir: str | Path, verify: bool = True) -> dict[str, Any]:
    """Load a bundle's manifest; with verify, check every listed file's size and sha256."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not path.is_file():
        raise InputError(f"{bundle_dir} is not an edgekit bundle: {MANIFEST} is missing")
    manifest = read_versioned_json(
        path, "schema", SCHEMA, "schema_version", SCHEMA_VERSION, "bundle manifest"
    )
    found = problems(manifest, bundle_dir)
    if found:
        raise InputError(f"{path}: invalid manifest: " + "; ".join(found))
    if verify:
        # every file present is listed (and so hashed): nothing unlisted can be loaded by reference
        # (ONNX external data, say), and nothing listed can be missing or changed
        extra = sorted(
            f.name
            for f in bundle_dir.iterdir()
            if (f.is_file() or f.is_symlink())
            and f.name != MANIFEST
            and f.name not in manifest["files"]
        )
        if extra:
            raise InputError(
                f"{bundle_dir}: {extra} are not listed in the manifest; a bundle holds only the files "
                "its manifest lists and hashes (remove them, or re-export)"
            )
        for name, info in manifest["files"].items():
            f = bundle_dir / name
            if f.is_symlink():
                raise InputError(
                    f"{bundle_dir}: {name} is a symbolic link; bundle files must be plain files"
                )
            if not f.is_file():
                raise InputError(f"{bundle_dir}: {name} is listed in the manifest but missing")
            if f.stat().st_size != info["bytes"] or sha256_file(f) != info["sha256"]:
                raise InputError(
                    f"{f}: sha256 does not match the manifest: the file is truncated or was "
                    "modified; re-export the bundle"
                )
    return manifest
