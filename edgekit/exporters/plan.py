"""Planning an export: a zoo checkpoint or a user's nn.Module -> what to export and how to check it.

A Plan holds the module (also the torch reference), its I/O contract, the manifest fields that
describe it, and the real inputs parity should replay. Nothing is written here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils import _pytree as pytree

from edgekit.bundle.io import TIME, IOContract
from edgekit.bundle.manifest import GRAPH, Manifest
from edgekit.bundle.parts import DEFAULT_ATOL, DEFAULT_RTOL, Source, StepGraph, Tolerance
from edgekit.errors import InputError
from edgekit.exporters.module_io import Declarations, describe_module
from edgekit.exporters.samples import Sample, real_samples
from edgekit.models.flat import export_module
from edgekit.models.registry import facts_of
from edgekit.preprocess import CHANNELS, check_image_spec


@dataclass
class Plan:
    """What to export and how to check it, for a zoo checkpoint or a user's module."""

    module: torch.nn.Module
    contract: IOContract
    described: Manifest  # the model as the manifest describes it: task, model, labels, source, ...
    real: list[Sample]
    real_note: str
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    # the zoo spec's one-token step graph, if it declares one: (bundle dir, reference, tolerance,
    # rollout steps) -> its manifest record, exported, checked and timed
    step_graph: Callable[[Path, Any, Tolerance, int], StepGraph] | None = None


def plan_from_checkpoint(checkpoint: str | Path) -> Plan:
    from edgekit.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.meta
    module = export_module(ckpt.build(), meta)
    facts = facts_of(meta)  # the model's spec: contract, head, tolerance, data, step graph
    real, note = real_samples(meta, facts.data_split)
    return Plan(
        module=module,
        contract=facts.contract,
        described=Manifest(
            task=meta["task"],
            graph=GRAPH,
            contract=facts.contract,
            model=meta["model"],
            model_config=meta["config"],
            head=facts.head,
            labels=_strings(meta.get("labels")),
            vocab=_strings(meta.get("vocab")),
            preprocess=meta.get("preprocess"),  # the trainer's own spec; loading checks it
            columns=_strings(meta.get("columns")),
            source=Source(
                ckpt.sha256,
                checkpoint=str(ckpt.path.resolve()),
                data=meta["data"],
                metrics=meta["metrics"],
            ),
        ),
        real=real,
        real_note=note,
        atol=facts.tolerance.atol,
        rtol=facts.tolerance.rtol,
        step_graph=_step_graph(facts.step_graph, module, facts.contract),
    )


def _step_graph(build: Any, module: torch.nn.Module, contract: IOContract) -> Any:
    """The spec's step-graph builder bound to this model (None when the spec declares none)."""
    if build is None:
        return None
    from edgekit.exporters.step_graph import add_step_graph

    return partial(
        add_step_graph, build=build, model=getattr(module, "lm", module), contract=contract
    )


def plan_from_module(
    module: torch.nn.Module, example_inputs: Any, declared: Declarations = Declarations()
) -> Plan:
    """A user's module: its contract is read from one run on the example inputs (module_io.py)."""
    preprocess = _checked(declared.preprocess)
    if preprocess is not None and declared.task not in IMAGE_TASKS:
        raise InputError(
            f"preprocess is applied by the {' and '.join(IMAGE_TASKS)} task APIs; "
            f"task {declared.task!r} would ignore it (pass task='classify' or 'regress', or drop it)"
        )
    flat, contract = describe_module(module, example_inputs, declared)
    if preprocess is not None:
        _fits_first_input(preprocess, contract)
    return Plan(
        flat,
        contract,
        Manifest(
            task=declared.task,
            graph=GRAPH,
            contract=contract,
            model=type(module).__name__,
            labels=_strings(declared.labels),
            vocab=_strings(declared.vocab),
            preprocess=preprocess,
            input_tree=pytree.treespec_dumps(flat.in_spec),
            source=Source(module_digest(module), module=type(module).__qualname__),
        ),
        [],
        "no real data for a user module",
    )


def can_step_only(contract: IOContract) -> bool:
    """A recurrent contract whose time axis is still dynamic: its one-token step may export where
    the sequence graph does not."""
    return bool(contract.state) and contract.role_axis(TIME) is not None and not contract.step_only


def step_only_plan(plan: Plan) -> Plan:
    """`plan` for the one-token step alone (time fixed at 1): checked on T = 1 feeds and a rollout
    whose prompt is fed by stepping; no real-data cases (they are whole sequences) and no separate
    step graph (the graph is one)."""
    contract = plan.contract.stepping_only()
    return replace(
        plan,
        contract=contract,
        described=replace(plan.described, contract=contract),
        real=[],
        real_note=plan.real_note + "; step-only: checked by stepping",
        step_graph=None,
    )


IMAGE_TASKS = ("classify", "regress")  # the task APIs that take images through `preprocess`


def _checked(spec: Any) -> dict[str, Any] | None:
    """An image preprocessing spec with its defaults filled in; anything else is one InputError."""
    return None if spec is None else check_image_spec(spec)


def _fits_first_input(spec: dict[str, Any], contract: IOContract) -> None:
    """The task APIs feed preprocessed images (N, C, H, W) to the first input: its fixed dims agree."""
    first = contract.inputs[0]
    made = (CHANNELS[spec["color"]], *spec["resize"])
    if len(first.shape) != 4 or any(
        isinstance(d, int) and d != m for d, m in zip(first.shape[1:], made, strict=True)
    ):
        raise InputError(
            f"preprocess makes images (batch, {', '.join(map(str, made))}) (color {spec['color']}, "
            f"resize {spec['resize']}), but input {first.name!r} has shape {list(first.shape)}"
        )


def _strings(values: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(str(v) for v in values)


def module_digest(module: torch.nn.Module) -> str:
    """sha256 over the module's state dict (names and bytes), to tie a bundle to its weights."""
    digest = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        digest.update(k.encode())
        digest.update(v.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
