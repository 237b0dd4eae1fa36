"""A module's declared state pairs, read against one run: the pairs whose output feeds the next call
as it is, and the growing ones (a KV cache: present = concat(past, new) along one dynamic axis),
with their max_length and what generation does when they are full."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from edgekit.bundle.io import StatePair, TensorSpec
from edgekit.bundle.validate import WHEN_FULL
from edgekit.errors import InputError


def declared_pairs(
    state_pairs: Sequence[tuple[str, str]] | None,
    inputs: Mapping[str, Any],
    outs: Mapping[str, Any],
    in_specs: Sequence[TensorSpec],
    declared: Any,  # module_io.Declarations: max_length, when_full
) -> list[StatePair]:
    """The state pairs as the contract records them; every mistake is one InputError."""
    pairs = [StatePair(i, o) for i, o in (state_pairs or [])]
    for p in pairs:
        if p.input not in inputs or p.output not in outs:
            raise InputError(
                f"state pair ({p.input!r}, {p.output!r}): the first must be an input "
                f"{list(inputs)}, the second an output {list(outs)}"
            )
    pairs = [_grown(p, inputs, outs, in_specs, declared.max_length) for p in pairs]
    if declared.when_full not in WHEN_FULL:
        raise InputError(f"when_full is {declared.when_full!r}; expected one of {WHEN_FULL}")
    if declared.when_full != "error" and not any(p.grows for p in pairs):
        raise InputError("when_full goes with a growing state (a KV cache with max_length)")
    return [replace(p, when_full=declared.when_full) if p.grows else p for p in pairs]


def _grown(
    pair: StatePair,
    inputs: Mapping[str, Any],
    outs: Mapping[str, Any],
    in_specs: Sequence[TensorSpec],
    max_length: int | None,
) -> StatePair:
    """The pair as given when its output feeds the next call's input as it is; else a growing
    pair (a KV cache: one dynamic axis longer in the output by the call's length)."""
    got, given = list(inputs[pair.input].shape), list(outs[pair.output].shape)
    if got == given:
        return pair
    spec = next(s for s in in_specs if s.name == pair.input)
    differ = [i for i, (a, b) in enumerate(zip(got, given, strict=False)) if a != b]
    grows = spec.shape[differ[0]] if len(differ) == 1 and len(got) == len(given) else None
    if not isinstance(grows, str) or given[differ[0]] < got[differ[0]]:
        raise InputError(
            f"state pair {pair.input} -> {pair.output}: shapes {got} and {given} differ; the "
            "output must feed the next call's input as it is, or grow along one dynamic axis by "
            "the call's length (a KV cache, with max_length=N)"
        )
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise InputError(
            f"state pair {pair.input} -> {pair.output} grows along {grows!r}: declare "
            f"max_length=N, the most positions it may hold, got {max_length!r}"
        )
    return StatePair(pair.input, pair.output, grows=grows, max_length=max_length)
