"""Small file helpers: checked paths, hashes, atomic writes."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekit.errors import InputError


def require_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if not p.is_file():
        raise InputError(f"{what} must be a file, got a directory: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"{what} is empty: {p}")
    return p


def read_versioned_json(
    path: Path, kind_key: str, kind: str, version_key: str, newest: int, noun: str
) -> dict:
    """Load an edgekit JSON document, refusing a corrupt one, another kind, or a newer version."""
    import json

    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: corrupt {noun} ({exc})") from None
    if not isinstance(doc, dict) or doc.get(kind_key) != kind:
        raise InputError(f"{path}: not an edgekit {noun} (no {kind_key} {kind!r})")
    version = doc.get(version_key)
    if not isinstance(version, int) or version > newest:
        raise InputError(
            f"{path}: {noun} version {version} is newer than this edgekit reads ({newest}); "
            "upgrade edgekit"
        )
    return doc


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_writable(target: str | Path) -> None:
    """Fail early, before any work, if `target` could not be created."""
    target = Path(target).absolute()
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot write to {target}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to {target}: {ancestor} is not writable")


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _publish_permissions(directory: Path) -> None:
    """mkdtemp makes a private (0700) directory: give it, and its files, the usual umask modes so a
    bundle deployed by one user can be read by the service that runs it."""
    umask = _umask()
    directory.chmod(0o777 & ~umask)
    for f in directory.iterdir():
        if f.is_file():
            f.chmod(0o666 & ~umask)


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a file, and
    the file gets the usual umask mode (mkstemp's own is a private 0600)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_directory(final: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `final`; rename it into place only if the block succeeds.

    A failure midway leaves nothing at `final` (and the old content, with force, untouched).
    """
    final = Path(final)
    if final.exists() and not force:
        raise InputError(f"{final} already exists; pass --force to replace it")
    check_writable(final)
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=parent))
    except OSError as exc:
        raise InputError(f"cannot write to {parent}: {exc.strerror}") from None
    try:
        yield tmp
        _publish_permissions(tmp)
        if final.exists():
            old = parent / f".{final.name}.old-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
