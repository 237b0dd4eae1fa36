"""A refused export in a few lines: each exporter's reason cut to its most informative line, then the
likely cause and the fix (causes.py); the whole text goes to a file whose path the refusal names.

Per exporter the user sees at most MAX_LINES lines of at most MAX_CHARS characters in all: for an
exception, its type and first meaningful message line (the innermost cause's, not torch's advice on
filing a bug, not an IR graph) and the user's line it points at; for a graph that fails parity, the
first frozen axis or failing case and the first diverging node. The full exception texts, parity
tables and whatever torch printed while exporting (the TorchScript exporter prints the whole IR graph
on a failure) are written to `edgekit-export-failure-*.txt` in the temporary directory.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import ExportRefused
from edgekit.exporters.causes import advice
from edgekit.parity import ParityReport

MAX_LINES = 3  # per exporter
MAX_CHARS = 300  # per exporter, all its lines together
FINDING = 160  # of a parity failure's first finding, leaving room for the diverging node
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# lines that say how to report a bug or where to look, not what went wrong
BOILERPLATE = re.compile(
    r"^(Failed to (convert|export) the|- |#|⬆|\(Refer to|Torch IR graph|Traceback|"
    r"The error above occurred|For (more|extended|C\+\+)|consider using|Caused by:|"
    r"torch\.jit\.script could not compile)"
)
USER_FRAME = re.compile(r'File "([^"]+)", line (\d+)(?:, in \w+)?\s*\n\s*(.+)')
HERE = re.compile(r'File "([^"]+)", line (\d+)\n(?:(?!\s*File ").*\n)*?(.*)\n\s*~+ <--- HERE')
TRACED_FRAME = re.compile(r"^(/[^\s()]+\.py)\((\d+)\): (\w+)$", re.M)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes, outermost first."""
    seen: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in seen and len(seen) < 10:
        seen.append(link)
        link = link.__cause__
    return seen


def full_text(exc: BaseException) -> str:
    return "\n  caused by ".join(f"{type(e).__name__}: {ANSI.sub('', str(e))}" for e in _chain(exc))


def _first_line(text: str) -> str:
    for line in ANSI.sub("", text).splitlines():
        line = line.strip()
        if line and not BOILERPLATE.match(line):
            return line.split("  [Caused by the value")[0].split(" (unhinted:")[0]
    return ""


def _ours(path: str) -> bool:
    """Whether a source path is torch's, another library's or edgekit's (not the user's)."""
    package = str(Path(__file__).resolve().parents[1])
    return "site-packages" in path or path.startswith(package) or path.startswith("<")


def _where(text: str) -> str:
    """The user's line the error points at: `at FILE:LINE: code`, or ""."""
    here = [h for h in HERE.finditer(text) if not _ours(h.group(1))]
    if here:
        path, line, code = here[0].groups()
        return f"at {path}:{line}: {code.strip()}"
    frames = [f for f in USER_FRAME.finditer(text) if not _ours(f.group(1))]
    if frames:
        path, line, code = frames[-1].groups()
        return f"at {path}:{line}: {code.strip()}"
    traced = [f for f in TRACED_FRAME.finditer(text) if not _ours(f.group(1))]
    if traced:
        path, line, function = traced[0].groups()
        return f"at {path}:{line} (in {function})"
    return ""


def short_reason(exc: BaseException) -> str:
    """An exporter's exception in at most MAX_LINES lines and MAX_CHARS characters: the type and
    first meaningful line of the innermost cause that has one, and the user's line it points at."""
    return cap(reason_lines(exc))


def reason_lines(exc: BaseException) -> list[str]:
    chain = _chain(exc)
    lines = []
    for e in reversed(chain):  # the innermost cause says what went wrong; the outer ones, where
        line = _first_line(str(e))
        if line:
            lines.append(f"{type(e).__name__}: {line}")
            break
    else:
        lines.append(type(exc).__name__)
    where = next((w for w in (_where(ANSI.sub("", str(e))) for e in chain) if w), "")
    if where:
        lines.append(where)
    return lines


def cap(lines: list[str]) -> str:
    """At most MAX_LINES lines and MAX_CHARS characters, each line cut with an ellipsis."""
    kept: list[str] = []
    left = MAX_CHARS
    for line in lines[:MAX_LINES]:
        if left <= 20:
            break
        kept.append(line if len(line) <= left else line[: left - 3] + "...")
        left -= len(kept[-1])
    return "\n  ".join(kept)


def failure_kind(exc: BaseException) -> str:
    from edgekit.exporters.scripting import ScriptError

    if isinstance(exc, ScriptError):
        return "could not script the module"
    if "onnxruntime" in type(exc).__module__ or "ONNXRuntime" in str(exc)[:80]:
        return "ONNX Runtime cannot load the exported graph"
    return "export failed"


@contextmanager
def native_output_kept(printed: list[str]) -> Iterator[None]:
    """Keep what torch prints itself during an export (to file descriptors 1 and 2, past Python's
    streams) off the console; append it to `printed` for the failure report."""
    _flush()
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no console to keep clean
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            _flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                printed.append(text)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


@dataclass
class Refusal:
    """What each refused candidate said: a few lines for the user, everything for the file."""

    out: Path
    short: list[str] = field(default_factory=list)
    full: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # full exception texts, for the known causes

    def exporter_failed(self, name: str, exc: BaseException, printed: list[str]) -> str:
        """Record an exporter's exception; return its short reason (for the manifest)."""
        first, *rest = reason_lines(exc)
        self.short.append(cap([f"[{name}] {failure_kind(exc)}: {first}", *rest]))
        self.errors.append(full_text(exc))
        self.full.append(f"[{name}] {failure_kind(exc)}: {self.errors[-1]}")
        self.full += [f"[{name}] torch printed while exporting:\n{p}" for p in printed]
        return short_reason(exc)

    def parity_failed(
        self, name: str, report: ParityReport, frozen: list[str], nodes: list[str]
    ) -> None:
        """Record a graph that runs but fails parity: the first finding and the diverging node."""
        found = [f"frozen dynamic axis: {f}" for f in frozen] + report.failures()
        first = found[0] if found else "see the table"
        first = first if len(first) <= FINDING else first[: FINDING - 3] + "..."
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        lines = [f"[{name}] parity FAIL: {first}{more}", *nodes[:1]]
        self.short.append(cap(lines))
        table = [f"[{name}] parity table (torch vs onnxruntime):", report.table()]
        table += [f"frozen dynamic axis: {f}" for f in frozen] + nodes
        self.full.append("\n".join(table))

    def error(
        self,
        attempts: list[dict[str, Any]],
        tried: list[str],
        module: Any,
        step_only_hint: bool = False,
    ) -> ExportRefused:
        ran = any("parity_failures" in a for a in attempts)
        head = f"export failed{' parity' if ran else ''}; no bundle written"
        after = advice(attempts, tried, module, self.errors)
        if step_only_hint:  # auto would have tried the one-token step next
            after.append(
                "or: export the one-token step alone (step_only=True, --step-only); prompts are "
                "then fed by stepping"
            )
        details = self._write("\n\n".join([head, *self.full, "\n".join(after)]))
        saved = (
            f"full exporter output: {details}"
            if details
            else "full exporter output: not saved (the temporary directory is not writable)"
        )
        return ExportRefused("\n".join([head, *self.short, saved, *after]), details)

    def _write(self, text: str) -> Path | None:
        try:
            fd, name = tempfile.mkstemp(
                prefix=f"edgekit-export-failure-{self.out.name or 'bundle'}-", suffix=".txt"
            )
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        except OSError:
            return None
        return Path(name)
