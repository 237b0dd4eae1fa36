"""The I/O description of a user's module, read from one run on its example inputs.

Inputs and outputs may be any pytree of tensors (tensors, tuples, lists, nested tuples, dicts). They
are flattened depth-first, dict entries in insertion order, to named tensors: a leaf's default name
is its path, e.g. `input.0`, `input.1.h`, `output`, `output.logits`, `output.1.0`; names given by the
user replace these one for one. `FlatIO` wraps the module so the exporters and the torch reference
see flat tensors in and a flat tuple out.

Each dynamic axis has any name; its role (batch or time) comes from the names "batch" and "time" or
from `axes={"seq": {"role": "time", "min": 5}}`. Integer inputs get their valid range from `int_ranges`,
from `vocab` (the token input), from the nn.Embedding they feed, or else from the example's values.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from edgekit.bundle.io import Axis, IOContract, TensorSpec, with_range
from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.exporters.state_pairs import declared_pairs

TASKS = ("generic", "classify", "regress", "generate")


class FlatIO(nn.Module):
    """`module` seen as flat tensors in, a flat tuple of tensors out."""

    def __init__(self, module: nn.Module, in_spec: Any) -> None:
        super().__init__()
        self.module = module
        self.in_spec = in_spec

    def forward(self, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args = pytree.tree_unflatten(list(flat), self.in_spec)
        return tuple(pytree.tree_leaves(self.module(*args)))


def _path_name(root: str, path: Sequence[Any]) -> str:
    keys = []
    for key in path:
        for attr in ("idx", "key", "name"):
            if hasattr(key, attr):
                keys.append(str(getattr(key, attr)))
                break
    return ".".join([root, *keys])


def _flatten(tree: Any, root: str, what: str) -> tuple[list[str], list[torch.Tensor], Any]:
    """(default names, tensors, spec) of a pytree; a leaf that is not a tensor is bad input."""
    try:
        leaves, spec = pytree.tree_flatten_with_path(tree)
    except ValueError:  # a node registered without key paths (transformers' ModelOutput)
        leaves, spec = pytree.tree_flatten_with_path(_plain(tree))
    names = [_path_name(root, path) for path, _ in leaves]
    for name, (_, leaf) in zip(names, leaves, strict=True):
        if not isinstance(leaf, torch.Tensor):
            kind = type(leaf).__name__
            raise InputError(
                f"{what} {name} is a {kind}, not a tensor: inputs and outputs are tensors, or "
                f"tuples, lists and dicts of them; wrap the module so the {kind} goes in and out "
                "as tensors"
                + (
                    " (a cache object: see the adapter in the README's growing-state and "
                    "step-only sections)"
                    if kind.endswith("Cache")
                    else ""
                )
            )
    if not leaves:
        raise InputError(f"the module's {what}s contain no tensor")
    return names, [leaf for _, leaf in leaves], spec


def _plain(tree: Any) -> Any:
    """`tree` with every mapping a plain dict (its keys in order) and every tuple or list rebuilt,
    so each leaf has a key path."""
    if isinstance(tree, Mapping):
        return {key: _plain(value) for key, value in tree.items()}
    if type(tree) in (tuple, list):  # a namedtuple has key paths of its own
        return type(tree)(_plain(value) for value in tree)
    return tree


def _names(given: Sequence[str] | None, default: list[str], what: str) -> list[str]:
    if given is None:
        return default
    given = list(given)
    if len(given) != len(default):
        raise InputError(
            f"{len(given)} {what} names for {len(default)} {what}s (flattened, in this order: "
            f"{', '.join(default)})"
        )
    if len(set(given)) != len(given):
        raise InputError(f"{what} names must be unique, got {given}")
    return given


def _embedding_ranges(
    module: nn.Module, args: tuple[Any, ...], inputs: dict[str, torch.Tensor]
) -> tuple[dict[str, tuple[int, int]], Any]:
    """Run the module once; for every integer input that feeds an nn.Embedding, its valid range."""
    seen: list[tuple[torch.Tensor, int]] = []

    def hook(embedding: nn.Module, hook_args: tuple[Any, ...]) -> None:
        if hook_args and isinstance(hook_args[0], torch.Tensor):
            seen.append((hook_args[0], int(embedding.num_embeddings)))  # type: ignore[arg-type]

    handles = [
        m.register_forward_pre_hook(hook) for m in module.modules() if isinstance(m, nn.Embedding)
    ]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the module's own warnings are not our finding here
            outputs = module(*args)
    finally:
        for h in handles:
            h.remove()
    ranges = {}
    for name, tensor in inputs.items():
        if tensor.dtype.is_floating_point:
            continue
        for fed, count in seen:  # the same storage: the input itself, a view or a transpose
            if fed.data_ptr() == tensor.data_ptr() and fed.numel() == tensor.numel():
                ranges[name] = (0, count)
    return ranges, outputs


def _shape(
    name: str,
    tensor: torch.Tensor,
    dims: Mapping[Any, str],
    sizes: dict[str, tuple[int, str]],
    pairs: Sequence[tuple[str, str]] = (),
) -> tuple[int | str, ...]:
    shape: list[int | str] = [int(s) for s in tensor.shape]
    for axis, dim in dims.items():
        if not isinstance(axis, int) or not -len(shape) <= axis < len(shape):
            raise InputError(
                f"dynamic_axes[{name!r}]: axis {axis!r} is not an axis of shape {list(tensor.shape)}"
            )
        if not isinstance(dim, str) or not dim:
            raise InputError(f"dynamic_axes[{name!r}][{axis}]: axis names are strings, got {dim!r}")
        size = int(tensor.shape[axis])
        first = sizes.setdefault(dim, (size, name))
        if first[0] != size:
            grown = {(first[1], name), (name, first[1])} & set(pairs)  # a KV cache's past, present
            hint = "; a growing state names its input's and output's axes apart (past, total)"
            raise InputError(
                f"axis {dim!r} is {size} in {name} but {first[0]} in {first[1]}: one name, one "
                f"size{hint if grown else ''}"
            )
        shape[axis] = dim
    return tuple(shape)


@dataclass(frozen=True)
class Declarations:
    """What a user says about a module's I/O and task (see `edgekit.export`); the rest is read
    from one run of the module on its example inputs."""

    input_names: Sequence[str] | None = None  # default: the inputs' pytree paths ("input.0")
    output_names: Sequence[str] | None = None
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None  # {"tokens": {0: "batch"}}
    state_pairs: Sequence[tuple[str, str]] | None = None  # [("state_in.h", "state_out.h")]
    axes: Mapping[str, Mapping[str, Any]] | None = None  # {"seq": {"role": "time", "min": 5}}
    int_ranges: Mapping[str, tuple[int, int]] | None = None  # {"ids": (0, 1000)}
    task: str = "generic"
    labels: Sequence[str] | None = None
    vocab: Sequence[str] | None = None  # the token of each id
    preprocess: Mapping[str, Any] | None = None  # images: edgekit.preprocess.check_image_spec
    # recurrent modules: inputs set once per stream and read by every step (encoder outputs)
    context: Sequence[str] | None = None
    # a state that grows by each call's time length (a KV cache) holds at most this many positions
    max_length: int | None = None
    # generation that would pass max_length: "error" (refused before it starts) or "stop" (ends)
    when_full: str = "error"
    # export the one-token step alone (time fixed at 1): prompts are fed by stepping
    step_only: bool = False


def describe_module(
    module: nn.Module, example_inputs: Any, declared: Declarations = Declarations()
) -> tuple[FlatIO, IOContract]:
    """The flat module to export and its I/O contract; every mistake is one InputError."""
    input_names, output_names = declared.input_names, declared.output_names
    dynamic_axes, state_pairs, axes = declared.dynamic_axes, declared.state_pairs, declared.axes
    int_ranges, vocab, task = declared.int_ranges, declared.vocab, declared.task
    if not isinstance(module, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    in_default, in_tensors, in_spec = _flatten(args, "input", "input")
    in_names = _names(input_names, in_default, "input")
    inputs = dict(zip(in_names, in_tensors, strict=True))
    module = module.eval()
    try:
        ranges, outputs = _embedding_ranges(module, args, inputs)
    except Exception as exc:  # the user's forward failed on their own example
        raise InputError(
            f"the module failed on the example inputs: {type(exc).__name__}: {exc}"
        ) from None
    out_default, out_tensors, _ = _flatten(outputs, "output", "output")
    out_names = _names(output_names, out_default, "output")
    outs = dict(zip(out_names, out_tensors, strict=True))

    dynamic = dict(dynamic_axes or {})
    unknown = [n for n in dynamic if n not in inputs and n not in outs]
    if unknown:
        raise InputError(
            f"dynamic_axes names {unknown}, which are neither inputs {in_names} nor outputs {out_names}"
        )
    sizes: dict[str, tuple[int, str]] = {}
    named_pairs = [(i, o) for i, o in state_pairs or []]  # for a KV cache's hint
    in_specs = [
        TensorSpec(n, _dtype(t), _shape(n, t, dynamic.get(n, {}), sizes, named_pairs))
        for n, t in inputs.items()
    ]
    out_specs = [
        TensorSpec(n, _dtype(t), _shape(n, t, dynamic.get(n, {}), sizes, named_pairs))
        for n, t in outs.items()
    ]

    roles = dict(axes or {})
    undeclared = [d for d in roles if d not in sizes]
    if undeclared:
        raise InputError(
            f"axes {undeclared} are not dynamic axes of any input or output (those are {sorted(sizes)})"
        )
    axis_specs = {}
    for dim, (size, _) in sizes.items():
        extra = dict(roles.get(dim, {}))
        if not isinstance(extra, Mapping):
            raise InputError(f"axes[{dim!r}] must be a dict such as {{'role': 'time', 'min': 5}}")
        if "example" not in extra and size >= max(2, int(extra.get("min", 1))):
            extra["example"] = size  # trace at the user's own size, where it is usable
        axis_specs[dim] = Axis.named(dim, **extra)

    pairs = declared_pairs(state_pairs, inputs, outs, in_specs, declared)
    state_inputs = {p.input for p in pairs}
    context = list(declared.context or [])
    if context and not pairs:
        raise InputError("context inputs go with state_pairs: they are read by every step")
    for name in context:
        if name not in inputs or name in state_inputs:
            raise InputError(
                f"context {name!r} must be an input that is not state; the inputs are {in_names}"
            )
    ints = [s.name for s in in_specs if s.dtype.startswith(("int", "uint"))]
    token = (
        next((n for n in ints if n not in state_inputs and n not in context), None)
        if pairs
        else None
    )
    if pairs and token is None:
        raise InputError("a recurrent module (state_pairs) needs an integer token input")
    if task == "generate" and not pairs:
        raise InputError("task 'generate' needs state_pairs: the recurrent state's input/output")

    given_ranges = dict(int_ranges or {})
    bad = [n for n in given_ranges if n not in ints]
    if bad:
        raise InputError(f"int_ranges {bad}: not integer inputs (those are {ints})")
    for n in ints:
        if n not in given_ranges and n == token and vocab:
            given_ranges[n] = (0, len(vocab))
        elif n not in given_ranges and n in ranges:
            given_ranges[n] = ranges[n]
        elif n not in given_ranges:  # nothing says: the example's own values
            t = inputs[n]
            given_ranges[n] = (min(0, int(t.min())), max(int(t.max()) + 1, 2))
    in_specs = [
        with_range(s, *given_ranges[s.name]) if s.name in given_ranges else s for s in in_specs
    ]
    vocab_size = len(vocab) if vocab else (given_ranges[token][1] if token else 0)
    contract = IOContract(in_specs, out_specs, pairs, token, vocab_size, axis_specs, context)
    for role in ("batch", "time") if pairs else ():
        if contract.role_axis(role) is None:
            raise InputError(_missing_role(contract, role, axis_specs))
    if declared.step_only:
        if not pairs:
            raise InputError("step_only goes with state_pairs: it exports a recurrent step")
        contract = contract.stepping_only()
    for name in context:  # one value per stream, stacked along the batch axis
        if contract.role_axis("batch") not in contract.spec(name).shape:
            raise InputError(
                f"context {name!r} needs the batch axis ({contract.role_axis('batch')!r}) in its "
                "dynamic_axes: each stream has its own"
            )
    return FlatIO(module, in_spec), contract


def _missing_role(contract: IOContract, role: str, axis_specs: Mapping[str, Any]) -> str:
    """What to declare for a recurrent module without a `role` axis: only an axis the tokens and
    the logits share can be one; with none, the module is not a stepper (e.g. a seq2seq model)."""
    state = {p.output for p in contract.state} | {p.input for p in contract.state}
    tokens = next((t for t in contract.inputs if t.name == contract.token_input), None)
    logits = next((t for t in contract.outputs if t.name not in state), None)
    shared = [
        d
        for d in (tokens.shape if tokens is not None else ())
        if isinstance(d, str)
        and axis_specs[d].role is None
        and logits is not None
        and d in logits.shape
    ]
    loose = [
        d
        for d in (tokens.shape if tokens is not None else ())
        if isinstance(d, str) and axis_specs[d].role is None
    ]
    # logits of rank 3 or more have a time axis of their own (maybe left undeclared); (B, V)
    # logits read the whole input at once: no axis to step over
    candidates = shared or (loose if logits is not None and len(logits.shape) >= 3 else [])
    if candidates:
        return (
            f"a recurrent module needs a {role} axis on its tokens, logits and state; "
            f"declare it: axes={{{candidates[0]!r}: {{'role': {role!r}}}}}"
        )
    seen = {t.name: list(t.shape) for t in (tokens, logits) if t is not None}
    return (
        f"a recurrent module needs a {role} axis that its tokens and logits share, and has none "
        f"({seen}); state_pairs describe a model that steps over that axis with its state. A "
        "sequence-to-sequence model (an encoder over one axis, a decoder over another) does not: "
        "export it without state_pairs (task generic), or as two modules (the encoder, and the "
        "decoder's step with its state)"
    )


def input_tree(manifest: Manifest) -> Any:
    """The pytree structure of a user module's inputs, as recorded at export (flat if absent)."""
    contract = manifest.contract
    recorded = manifest.input_tree
    if recorded:
        return pytree.treespec_loads(recorded)
    return pytree.tree_flatten(tuple(range(len(contract.inputs))))[1]


def _dtype(t: torch.Tensor) -> str:
    return str(t.detach().cpu().numpy().dtype) if t.dtype != torch.bfloat16 else "float32"
