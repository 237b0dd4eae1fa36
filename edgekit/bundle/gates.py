"""A reduced-precision variant's gate measurements and notes as `edgekit quantize` recorded them,
read as types (torch-free). The record itself is kept as written (`Variant.gates`, `.details`);
these are the views every report reads, so the keys are known here only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _float(doc: Mapping[str, Any], key: str) -> float | None:
    value = doc.get(key)
    return None if value is None else float(value)


@dataclass(frozen=True)
class Speed:
    """Batch 1, one thread: the variant's call (or step) against fp32's, in microseconds."""

    variant_us: float
    fp32_us: float
    ratio: float  # variant / fp32: < 1 is faster


FLOAT_GATES = (
    "accuracy_fp32",
    "accuracy_variant",
    "accuracy_delta",
    "top1_agreement",
    "top1_agreement_torch",
    "perplexity_fp32",
    "perplexity_variant",
    "perplexity_delta",
    "top1_agreement_text",
    "output_error",
    "output_error_torch",
)


@dataclass(frozen=True)
class Gates:
    passed: bool
    failures: tuple[str, ...] = ()
    speed: Speed | None = None
    held_out: str | None = None  # what the task gates measured on, e.g. "real data (360 ...)"
    # classifiers
    accuracy_fp32: float | None = None
    accuracy_variant: float | None = None
    accuracy_delta: float | None = None
    top1_agreement: float | None = None  # with fp32 (language models: with torch's rollout)
    top1_agreement_torch: float | None = None
    # language models
    perplexity_fp32: float | None = None
    perplexity_variant: float | None = None
    perplexity_delta: float | None = None
    top1_agreement_text: float | None = None
    first_greedy_divergence: int | None = None
    rollout_steps: int | None = None
    state_drift: Mapping[str, float] = field(default_factory=dict)  # relative, per state
    # every task
    output_error: float | None = None
    output_error_torch: float | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Gates:
        speed = doc.get("speed")
        floats = {k: _float(doc, k) for k in FLOAT_GATES}
        divergence, steps = doc.get("first_greedy_divergence"), doc.get("rollout_steps")
        return cls(
            passed=bool(doc.get("passed")),
            failures=tuple(str(f) for f in doc.get("failures") or ()),
            speed=Speed(float(speed["variant_us"]), float(speed["fp32_us"]), float(speed["ratio"]))
            if isinstance(speed, Mapping) and {"variant_us", "fp32_us", "ratio"} <= set(speed)
            else None,
            held_out=doc.get("held_out"),
            first_greedy_divergence=None if divergence is None else int(divergence),
            rollout_steps=None if steps is None else int(steps),
            state_drift={str(k): float(v) for k, v in (doc.get("state_drift") or {}).items()},
            **floats,
        )

    @property
    def quality(self) -> str:
        """The task-quality change against fp32, in words ("" when none was measured)."""
        if self.accuracy_delta is not None:
            return f"accuracy {self.accuracy_delta:+.2%}"
        if self.perplexity_delta is not None:
            return f"perplexity {self.perplexity_delta:+.2%}"
        if self.output_error is not None:
            return f"output error {self.output_error:.2%}"
        return ""


@dataclass(frozen=True)
class VariantNotes:
    """What quantize noted about how a variant was made."""

    parent_sha256: str | None = None  # the fp32 graph it was made from
    recipe_mode: str | None = None  # e.g. "dynamic", "static"
    recipe_per_channel: bool = False
    recipe_why: str = ""
    bytes_ratio: float | None = None  # the files it adds, against the fp32 graph
    step_bytes_ratio: float | None = None
    float_ops: tuple[str, ...] = ()  # op types left in float
    float_weight_share: float | None = None
    prompts: str | None = None  # where prompts run, when not on the variant's own graph

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> VariantNotes:
        recipe = doc.get("recipe") or {}
        return cls(
            doc.get("parent_sha256"),
            recipe.get("mode"),
            bool(recipe.get("per_channel")),
            str(recipe.get("why", "")),
            _float(doc, "bytes_ratio"),
            _float(doc, "step_bytes_ratio"),
            tuple(str(o) for o in doc.get("float_ops") or ()),
            _float(doc, "float_weight_share"),
            doc.get("prompts"),
        )
