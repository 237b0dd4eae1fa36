"""One validation layer for the JSON a client sends: each check names the field, what it got and
what it expects, as one InputError (a 400), before any value reaches numpy or a model."""

from __future__ import annotations

import math
from typing import Any

from edgekit.errors import InputError

INT64 = (-(2**63), 2**63 - 1)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(value: Any, field: str, low: int = INT64[0], high: int = INT64[1]) -> int:
    """An integer low <= value <= high (booleans and floats are not integers)."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InputError(f"{field} must be an integer {low} .. {high}, got {_shown(value)}")
    return value


def number(value: Any, field: str, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite number low <= value <= high (not a boolean, not a string)."""
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise InputError(
            f"{field} must be a finite number {low:g} .. {high:g}, got {_shown(value)}"
        )
    return float(value)


def flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{field} must be true or false, got {_shown(value)}")
    return value


def obj(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{field} must be a JSON object, got {type(value).__name__}")
    return value


def objects(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputError(f"{field} must be a list of JSON objects, got {_shown(value)}")
    return value


def strings(value: Any, field: str) -> list[str]:
    """A string, or a list of strings, as a list."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{field} must be a string or a list of strings, got {_shown(value)}")
    return value
