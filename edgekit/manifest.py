"""Bundle manifests (kept for older imports: the typed manifest lives in edgekit.bundle)."""

from edgekit.bundle.directory import MANIFEST, read_manifest, write_manifest
from edgekit.bundle.manifest import SCHEMA, SCHEMA_VERSION

__all__ = ["MANIFEST", "SCHEMA", "SCHEMA_VERSION", "read_manifest", "write_manifest"]
