"""A bundle on disk: its manifest, its files by role, their hashes (torch-free).

`Bundle.read(path)` validates the manifest and checks every listed file's size and sha256 before
anything in the bundle is trusted; `write_manifest` records the hash of every file, then writes the
manifest atomically (a reader never sees a half-written one).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.io import IOContract
from edgekit.bundle.manifest import SCHEMA, SCHEMA_VERSION, FileRecord, Manifest
from edgekit.errors import InputError
from edgekit.files import finish_interrupted_swap, read_versioned_json, sha256_file

MANIFEST = "edgekit.json"


@dataclass(frozen=True)
class Bundle:
    """A bundle directory and its manifest (at the precision a backend runs it)."""

    path: Path
    manifest: Manifest

    @classmethod
    def read(cls, path: str | Path, verify: bool = True) -> Bundle:
        path = Path(path)
        return cls(path, Manifest.from_json(read_manifest(path, verify), path))

    @property
    def contract(self) -> IOContract:
        return self.manifest.contract

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def graph(self) -> Path:
        """The ONNX graph a backend opens (a variant's, in a view at its precision)."""
        return self.path / self.manifest.graph

    @property
    def step_graph(self) -> Path | None:
        """The one-token graph steps run on, or None (the sequence graph serves steps)."""
        step = self.manifest.step_file
        return None if step is None else self.path / step

    @property
    def any_step_graph(self) -> Path | None:
        """The step graph export kept, used for steps or not (quantize and floors read it)."""
        step = self.manifest.step_graph
        return None if step is None or not step.file else self.path / step.file

    def at(self, precision: str, device: str = "cpu") -> Bundle:
        return replace(self, manifest=self.manifest.at(precision, device))

    def golden_arrays(self) -> dict[str, np.ndarray]:
        """Every array of the golden records (torch's outputs at export)."""
        golden = self.manifest.golden
        if golden is None:
            raise InputError(
                f"{self.path} has no golden records (it was exported by an older edgekit); "
                "re-export it"
            )
        try:
            with np.load(self.path / golden.file, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path}: the golden records cannot be read ({exc})") from None


def write_manifest(bundle_dir: Path, manifest: Manifest | Mapping[str, Any]) -> Manifest:
    """Record the hash of every file in `bundle_dir` in the manifest, then write it atomically."""
    files = {}
    for f in sorted(p for p in bundle_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        if f.name == MANIFEST:
            continue
        files[f.name] = FileRecord(sha256_file(f), f.stat().st_size)
    if isinstance(manifest, Manifest):
        doc = replace(manifest, files=files).to_json()
    else:  # a raw document (tools and tests that edit one): written as given, with its hashes
        doc = {
            **manifest,
            "files": {n: {"sha256": r.sha256, "bytes": r.bytes} for n, r in files.items()},
        }
    tmp = bundle_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, bundle_dir / MANIFEST)  # atomic: a reader never sees a half-written manifest
    return Manifest.from_json(doc)


def read_bundle(path: str | Path, verify: bool = True) -> Bundle:
    return Bundle.read(path, verify)


def read_manifest(bundle_dir: str | Path, verify: bool = True) -> dict[str, Any]:
    """A bundle's manifest document, validated (and with verify, every listed file's size and
    sha256 checked). Readers take `Bundle.read(...).manifest`; this raw form is for tools that
    edit the document."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not bundle_dir.exists():  # a writer may have died mid-swap: finish it, then read
        finish_interrupted_swap(bundle_dir)
    if not path.is_file():
        raise InputError(f"{bundle_dir} is not an edgekit bundle: {MANIFEST} is missing")
    doc = read_versioned_json(
        path, "schema", SCHEMA, "schema_version", SCHEMA_VERSION, "bundle manifest"
    )
    from edgekit.bundle.manifest import problems

    found = problems(doc, bundle_dir)
    if found:
        raise InputError(f"{path}: invalid manifest: " + "; ".join(found))
    if verify:
        _verify_files(bundle_dir, doc["files"])
    return doc


def _verify_files(bundle_dir: Path, listed: Mapping[str, Mapping[str, Any]]) -> None:
    # every file present is listed (and so hashed): nothing unlisted can be loaded by reference
    # (ONNX external data, say), and nothing listed can be missing or changed
    extra = sorted(
        f.name
        for f in bundle_dir.iterdir()
        if (f.is_file() or f.is_symlink()) and f.name != MANIFEST and f.name not in listed
    )
    if extra:
        raise InputError(
            f"{bundle_dir}: {extra} are not listed in the manifest; a bundle holds only the files "
            "its manifest lists and hashes (remove them, or re-export)"
        )
    for name, info in listed.items():
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
