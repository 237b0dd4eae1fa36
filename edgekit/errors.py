"""Typed errors. Each says what was received, what was expected and, where it helps, how to fix it.

The CLI maps them to exit codes: `InputError` (and `MissingDependency`) -> 2, `CheckFailed` -> 1.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base class for every error edgekit raises on purpose."""

    exit_code = 2


class InputError(EdgekitError, ValueError):
    """The user gave something we cannot use: a bad path, option, file or tensor."""


class CheckFailed(EdgekitError):
    """A check ran and failed: parity, tolerance, integrity of a verified artifact."""

    exit_code = 1


class MissingDependency(EdgekitError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
