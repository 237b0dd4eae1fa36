"""`edgekit triton`: a Triton Inference Server model repository from one or more bundles, written
atomically: per bundle `NAME/config.pbtxt` + `NAME/1/model.onnx` (the bundle's graph, or a copy
derived from it and checked against it: exporters/triton_graph.py), and `NAME_trt` for a bundle's
TensorRT engines.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekit.bundle.directory import Bundle
from edgekit.errors import InputError
from edgekit.exporters.triton_graph import state_output_renames, write_derived
from edgekit.files import atomic_directory, refuse_overlap
from edgekit.serve.triton import batch_axes, model_config

MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_BATCH = 2**31 - 1  # Triton's max_batch_size is an int32


def write_repository(
    bundle: Path,
    out: Path,
    name: str | None = None,
    max_batch: int = 32,
    precision: str = "fp32",
    force: bool = False,
    batch_sequences: bool = False,
) -> dict[str, Any]:
    """Write (or with `force`, replace) a model repository at `out` serving one bundle; return
    what was written. A recurrent bundle gets its own graph, one stream per call, or with
    `batch_sequences` a batch-first copy of it, checked against it, so that Triton batches
    concurrent sequences."""
    return write_models(
        [(name or bundle.resolve().name, bundle)], out, max_batch, precision, force, batch_sequences
    )


def write_models(
    bundles: Sequence[tuple[str, Path]],
    out: Path,
    max_batch: int = 32,
    precision: str = "fp32",
    force: bool = False,
    batch_sequences: bool = False,
) -> dict[str, Any]:
    """One repository at `out` serving every (name, bundle), written at once: all or nothing."""
    if not 1 <= max_batch <= MAX_BATCH:
        raise InputError(f"--max-batch must be 1 .. {MAX_BATCH} (Triton's int32), got {max_batch}")
    if out.is_symlink():
        raise InputError(f"--out {out} is a symbolic link; give the repository's own path")
    names = [name for name, _ in bundles]
    for name in names:
        if not MODEL_NAME.fullmatch(name):
            raise InputError(
                f"model name {name!r}: use letters, digits, '_', '.' and '-', starting with a "
                "letter, a digit or '_' (it names a folder of the repository and Triton's model)"
            )
    taken = names + [f"{n}_trt" for n in names]
    if len(set(taken)) != len(taken):
        raise InputError(f"two models would share a name: {names}; name them with NAME=PATH")
    read = [(name, path, Bundle.read(path, verify=True).at(precision)) for name, path in bundles]
    for _, path, seen in read:
        if seen.contract.growing:
            raise InputError(
                f"{path}: its state grows from call to call (a KV cache) and starts empty, which "
                "Triton's onnxruntime backend cannot keep as implicit state (Triton 2.51 grows a "
                "dims -1 state, but a zero-size initial state fails the first step with 'not "
                "enough space'); serve it with edgekit serve"
            )
    for _, path in bundles:
        refuse_overlap(out, path)
    models: dict[str, str] = {}
    with atomic_directory(out, force) as tmp:
        for name, _, seen in read:
            models.update(_write_model(tmp, name, seen, max_batch, precision, batch_sequences))
    return {"repository": str(out), "models": models}


def _write_model(
    tmp: Path, name: str, seen: Any, max_batch: int, precision: str, batch_sequences: bool
) -> dict[str, str]:
    contract = seen.contract
    models = {}
    renames = state_output_renames(contract)
    batched = batch_sequences and bool(contract.state)
    config, how = model_config(name, contract, "onnxruntime_onnx", max_batch, "", renames, batched)
    derive = bool(renames) or (batched and bool(batch_axes(contract)))
    if derive:  # a checked copy Triton can batch, or pair states in, as it is
        _model(tmp / name, config, {})
        write_derived(seen.graph, tmp / name / "1" / "model.onnx", contract, renames, batched)
        if renames:
            how += f"; state outputs renamed for Triton's state pairing ({len(renames)})"
    else:
        _model(tmp / name, config, {"model.onnx": seen.graph})
    models[name] = how
    engines = seen.manifest.engines
    if engines and precision == "fp32":
        plans = {e.compute_capability: f"model.sm{e.compute_capability}.plan" for e in engines}
        files = {plans[e.compute_capability]: seen.file(e.file) for e in engines}
        extra = "".join(
            f'cc_model_filenames {{ key: "{cc}" value: "{plan}" }}\n' for cc, plan in plans.items()
        )
        config, how = model_config(f"{name}_trt", contract, "tensorrt_plan", max_batch, extra)
        _model(tmp / f"{name}_trt", config, files)
        models[f"{name}_trt"] = how
    return models


def _model(folder: Path, config: str, files: dict[str, Path]) -> None:
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(config)
    for target, source in files.items():
        shutil.copyfile(source, folder / "1" / target)
