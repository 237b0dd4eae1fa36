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
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{path}: {version_key} must be a positive integer, got {version!r}")
    if version > newest:
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(final: Path) -> None:
    """Temporary folders of `final` left by processes that died mid-write (SIGKILL, power loss)."""
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        pid = tmp.name[len(final.name) + 6 :].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)) and tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)


def finish_interrupted_swap(final: Path) -> None:
    """A writer that died between its two renames (`final` -> .NAME.old-PID, then the new content
    .NAME.tmp-PID-* -> `final`) left `final` missing, or left its old content behind: finish what
    it began. The new content was complete (the swap starts only after the write succeeded), so
    it takes `final`; without it the old content goes back. Live writers' files are never touched.
    """
    for old in sorted(final.parent.glob(f".{final.name}.old-*")):
        pid = old.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:  # another reader may be finishing the same swap: whoever comes second finds it done
            if not final.exists() and not final.is_symlink():
                done = sorted(
                    final.parent.glob(f".{final.name}.tmp-{pid}-*"),
                    key=lambda p: p.stat().st_mtime,
                )
                (done[-1] if done else old).rename(final)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            elif old.exists():
                old.unlink()
        except OSError:
            continue


def refuse_overlap(out: Path, source: Path | None = None) -> None:
    """Refuse an output folder that is, contains or lies inside the source, or that is (or
    contains) the current directory: replacing it would delete what it was made from."""
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise InputError(f"--out {out} is the current directory or contains it; name a new folder")
    if source is not None:
        src = source.resolve()
        if target == src or target in src.parents or src in target.parents:
            raise InputError(
                f"--out {out} overlaps the source {source}; writing there would destroy it. "
                "Name a folder outside it"
            )


@contextmanager
def atomic_directory(final: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `final`; rename it into place only if the block succeeds.

    A failure midway leaves nothing at `final` (and the old content, with force, untouched). An
    exclusive lock beside `final` makes a second writer of the same folder fail at once instead of
    silently replacing the first one's result.
    """
    import fcntl

    final = Path(final)
    finish_interrupted_swap(final)  # a dead writer's half-done swap, finished before judging
    if final.exists() and not force:
        raise InputError(f"{final} already exists; pass --force to replace it")
    check_writable(final)
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock = open(parent / f".{final.name}.lock", "w")  # noqa: SIM115  (held until the end)
    except OSError as exc:
        raise InputError(f"cannot write to {parent}: {exc.strerror}") from None
    locked = False
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except OSError:
            raise InputError(f"another edgekit process is writing {final}; wait for it") from None
        finish_interrupted_swap(final)  # before the dead writer's temporary folders are removed
        remove_stale_temps(final)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=parent))
        except OSError as exc:
            raise InputError(f"cannot write to {parent}: {exc.strerror}") from None
        try:
            yield tmp
            _publish_permissions(tmp)
            if final.exists() and not force:  # appeared while we worked: never replace it silently
                raise InputError(f"{final} appeared while exporting; pass --force to replace it")
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
    finally:
        if locked:  # the holder's lock file is not ours to remove
            (parent / f".{final.name}.lock").unlink(missing_ok=True)
        lock.close()


def cache_dir(bundle: str | Path) -> Path:
    """Where derived files of a bundle (optimised graphs, TensorRT EP engines) go: never the bundle
    itself, which may be read-only. $EDGEKIT_CACHE_DIR, else $XDG_CACHE_HOME/edgekit, else
    ~/.cache/edgekit; one folder per bundle, named by the hash of its manifest."""
    root = os.environ.get("EDGEKIT_CACHE_DIR") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekit"
    )
    key = sha256_file(Path(bundle) / "edgekit.json")[:16]
    path = Path(root) / key
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"cannot create the cache folder {path} ({exc.strerror}); set EDGEKIT_CACHE_DIR"
        ) from None
    return path
