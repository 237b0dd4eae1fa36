"""The bundle: its manifest as types, its one I/O description, its files (torch-free)."""

from edgekit.bundle.directory import MANIFEST, Bundle, read_bundle, read_manifest, write_manifest
from edgekit.bundle.dtypes import DTYPES
from edgekit.bundle.io import IOContract, StatePair, TensorSpec
from edgekit.bundle.layout import Layout
from edgekit.bundle.manifest import (
    Engine,
    Golden,
    Manifest,
    StepGraph,
    Tolerance,
    Variant,
)

__all__ = [
    "DTYPES",
    "MANIFEST",
    "Bundle",
    "Engine",
    "Golden",
    "IOContract",
    "Layout",
    "Manifest",
    "StatePair",
    "StepGraph",
    "TensorSpec",
    "Tolerance",
    "Variant",
    "read_bundle",
    "read_manifest",
    "write_manifest",
]
