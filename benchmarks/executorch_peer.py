"""ExecuTorch with its XNNPACK delegate, used by hand as a careful user would without edgekit: a
peer for the recurrent charlm rows (`step bound B=...`), greedy one-token steps, state carried.

- The model is edgekit's own fused one-token step (exporters/step_graph.StepLM, the function the
  bundle's model.step.onnx holds), so the row compares runtimes on one function, not two ways of
  writing the model. It is exported with torch.export at a static batch B and T = 1, lowered with
  `to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])` (ExecuTorch's recommended
  CPU path), written as a .pte and run by `executorch.runtime` (the documented Python runtime).
  What XNNPACK does not take (the token-table gather, the gate splits, the per-layer state
  selects) runs as ExecuTorch's portable kernels between delegate calls, as it would for any user.
- State travels as tensors: `Method.execute` returns copies of the outputs (that API always
  copies), and those copies are passed straight back as the next call's inputs; argmax writes into
  one token tensor reused for every step.
- Threads: ExecuTorch has one threadpool per process, sized by `_unsafe_reset_threadpool` (the
  pybindings' only thread control). XNNPACK keeps a pointer to the pool a method was loaded under,
  and a reset frees that pool, so the pool is sized before loading and a different size is refused
  while a program loaded under the old one is alive. threads=1 is honoured; None: ExecuTorch's
  default (one thread per performance core).
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgekit.bench.cases import Case

BACKEND = "executorch-xnnpack"
# Warnings executorch 1.5.1 and the packages it pulls in raise on import and while lowering
# (importlib.resources' legacy calls, its own "experimental API" notice, torch pytree and
# TorchScript deprecations): not ours to fix, and errors under pytest's filterwarnings=error.
_NOISE = (
    (r"(read_text|open_text|read_binary) is deprecated", DeprecationWarning),
    (r"This API is experimental", DeprecationWarning),  # ExperimentalWarning's base
    (r"`torch\.jit\.script_method` is deprecated", DeprecationWarning),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)
_LOADED: weakref.WeakSet[Any] = weakref.WeakSet()  # programs alive, each bound to the pool it saw
_DEFAULT_THREADS: list[int] = []  # the pool's size before this module first changed it


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for message, category in _NOISE:
            warnings.filterwarnings("ignore", message, category)
        yield


def available() -> str | None:
    """None when ExecuTorch, its XNNPACK partitioner and its runtime import; else why not."""
    try:
        with _quiet():
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import (  # noqa: F401
                XnnpackPartitioner,
            )
            from executorch.exir import to_edge_transform_and_lower  # noqa: F401
            from executorch.runtime import Runtime
    except ImportError as exc:
        return f"executorch is not installed ({exc})"
    if not Runtime.get().backend_registry.is_available("XnnpackBackend"):
        return "this executorch build has no XNNPACK backend"
    return None


def _set_threads(threads: int | None) -> None:
    from executorch.extension.pybindings import portable_lib as et

    current = et._threadpool_get_thread_count()
    if not _DEFAULT_THREADS:
        _DEFAULT_THREADS.append(current)
    wanted = threads or _DEFAULT_THREADS[0]
    if wanted == current:
        return
    gc.collect()  # steps of an earlier run that are no longer referenced free their programs
    if len(_LOADED):
        raise RuntimeError(
            f"ExecuTorch's threadpool has {current} threads and a program loaded under it is "
            f"still alive: resizing it to {wanted} would free the pool XNNPACK uses"
        )
    et._unsafe_reset_threadpool(wanted)


def greedy_step(checkpoint: Path, batch: int, threads: int | None = None) -> Callable[[], Any]:
    """A greedy one-token step of `batch` streams of a charlm checkpoint on ExecuTorch/XNNPACK,
    from token 0 and zero state; each call returns its logits (B, 1, V) and feeds their argmax
    and the new state to the next call."""
    import torch

    from edgekit.exporters.step_graph import StepLM
    from edgekit.training.checkpoint import load_checkpoint

    with _quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        from executorch.runtime import Runtime

    ckpt = load_checkpoint(checkpoint)
    if ckpt.model != "charlm":
        raise ValueError(f"{checkpoint}: a charlm checkpoint is needed, not {ckpt.model}")
    _set_threads(threads)  # before loading: XNNPACK binds the pool when a method is loaded
    lm = ckpt.build()
    tokens = torch.zeros(batch, 1, dtype=torch.long)  # (B, 1): token 0 starts every stream
    state = list(lm.initial_state(batch))  # h (and c for LSTM), each (L, B, H), zeros
    with _quiet(), torch.no_grad():
        exported = torch.export.export(StepLM(lm).eval(), (tokens, *state))  # static B, T = 1
        lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        program_bytes = lowered.to_executorch().buffer
    folder = tempfile.mkdtemp(prefix="edgekit-executorch-")
    pte = Path(folder) / "step.pte"
    pte.write_bytes(program_bytes)
    program = Runtime.get().load_program(pte)
    method = program.load_method("forward")
    _LOADED.add(program)
    inputs: list[Any] = [tokens, *state]

    def step(_program: Any = program) -> Any:  # the default keeps the program alive with the step
        logits, *new_state = method.execute(inputs)  # logits (B, 1, V), copies of the outputs
        inputs[1:] = new_state  # the next call's state, passed back as returned
        torch.argmax(logits, dim=-1, out=tokens)  # (B, 1): into the tensor `inputs` holds
        return logits

    weakref.finalize(step, shutil.rmtree, folder, True)  # the .pte goes with the step (or at exit)
    return step


def executorch_peers(
    checkpoint: Path, batches: list[int], threads: int | None = None
) -> list[Case]:
    """The ExecuTorch/XNNPACK step rows of a charlm checkpoint, labelled as edgekit's own bound
    step rows so that they line up, on `threads` threads (None: ExecuTorch's default)."""
    return [
        Case(BACKEND, f"step bound B={b}", b, b, greedy_step(checkpoint, b, threads), "fp32")
        for b in batches
    ]


def peer(checkpoint: Path, threads: int | None = None) -> Callable[..., list[Case]]:
    """`executorch_peers` in run_bench's `peers` form (path, contract, batches): it is handed
    the bundle's graph, and this peer lowers from the bundle's checkpoint instead."""
    return lambda _graph, _contract, batches: executorch_peers(checkpoint, batches, threads)
