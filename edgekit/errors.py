"""Typed errors. Each says what was received, what was expected and, where it helps, how to fix it.

The CLI maps them to exit codes: `InputError` (and `MissingDependency`) -> 2, `CheckFailed` -> 1.
"""

from __future__ import annotations

from pathlib import Path


class EdgekitError(Exception):
    """Base class for every error edgekit raises on purpose."""

    exit_code = 2


class InputError(EdgekitError, ValueError):
    """The user gave something we cannot use: a bad path, option, file or tensor."""


class CheckFailed(EdgekitError):
    """A check ran and failed: parity, tolerance, integrity of a verified artifact."""

    exit_code = 1


class ExportRefused(CheckFailed):
    """No exporter gave a graph that passes: a few lines per exporter, the likely cause and the fix;
    `details` is the file holding every exporter's full output (None if it could not be written)."""

    def __init__(self, message: str, details: Path | None = None) -> None:
        super().__init__(message)
        self.details = details


class MissingDependency(EdgekitError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
