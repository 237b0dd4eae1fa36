"""Checkpoints: a directory with weights.safetensors and checkpoint.json. Nothing is ever unpickled.

checkpoint.json carries what is needed to rebuild and use the model (model name, config, task, vocab or
labels, preprocessing), how it was trained (data description, options, metrics, library versions) and
two hashes: `weights_sha256` of the safetensors file and `content_sha256` over the rest of the JSON, so a
truncated or edited checkpoint is refused. This module is torch-free except `load_weights`/`build`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import InputError
from edgekit.files import atomic_directory, read_versioned_json, sha256_bytes, sha256_file

FORMAT = "edgekit.checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
METADATA = "checkpoint.json"


def _content_hash(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "content_sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.meta["model"])

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS

    @property
    def sha256(self) -> str:
        """Identity of the whole checkpoint (metadata hash, which covers the weights hash)."""
        return str(self.meta["content_sha256"])

    def config(self) -> Any:
        from edgekit.models import get_model

        return get_model(self.model).config_from_dict(self.meta["config"])

    def build(self) -> Any:
        """The torch module with these weights, in eval mode, on the CPU."""
        import torch
        from safetensors.torch import load_file

        from edgekit.models import get_model

        entry, config = get_model(self.model), self.config()
        try:
            with torch.device(
                "meta"
            ):  # shapes only: a config asking for huge layers allocates nothing
                skeleton = entry.build(config)
        except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
            raise InputError(f"{self.path}: the config cannot be built ({exc})") from None
        expected = {k: list(v.shape) for k, v in skeleton.state_dict().items()}
        stored = safetensors_shapes(self.weights_path)
        if expected != stored:
            differ = sorted(
                k for k in set(expected) | set(stored) if expected.get(k) != stored.get(k)
            )
            shown = ", ".join(
                f"{k}: config {expected.get(k)} vs weights {stored.get(k)}" for k in differ[:3]
            )
            raise InputError(f"{self.path}: the config does not match the weights ({shown})")
        module = entry.build(config)
        module.load_state_dict(load_file(str(self.weights_path)), strict=True)
        return module.eval()


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors file's JSON header, without reading the tensors."""
    import json
    import struct

    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(size))
        return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise InputError(f"{path} is not a safetensors file ({exc})") from None


def save_checkpoint(out: str | Path, module: Any, meta: dict[str, Any]) -> Checkpoint:
    """Write atomically: a failure midway leaves any previous checkpoint at `out` untouched."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    with atomic_directory(out, force=True) as tmp:
        save_file(tensors, str(tmp / WEIGHTS))
        meta["weights_sha256"] = sha256_file(tmp / WEIGHTS)
        meta["content_sha256"] = _content_hash(meta)
        (tmp / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return Checkpoint(Path(out), meta)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint's metadata and weights hash (torch-free)."""
    path = Path(path)
    if path.is_file() and path.name in (METADATA, WEIGHTS):
        path = path.parent
    if not path.is_dir():
        raise InputError(f"checkpoint not found: {path} (expected a directory with {METADATA})")
    meta_file, weights = path / METADATA, path / WEIGHTS
    for f in (meta_file, weights):
        if not f.is_file():
            raise InputError(f"{path} is not a checkpoint: {f.name} is missing")
    meta = read_versioned_json(
        meta_file, "format", FORMAT, "format_version", FORMAT_VERSION, "checkpoint"
    )
    if meta.get("content_sha256") != _content_hash(meta):
        raise InputError(f"{meta_file}: metadata hash mismatch: the file was edited or damaged")
    if sha256_file(weights) != meta.get("weights_sha256"):
        raise InputError(
            f"{weights}: sha256 does not match the checkpoint metadata: "
            "the weights are truncated or were modified"
        )
    return Checkpoint(path, meta)
