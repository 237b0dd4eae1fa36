"""Checkpoints round-trip bit-identically and refuse damage, tampering and newer formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from edgekit.errors import InputError
from edgekit.training.checkpoint import FORMAT_VERSION, METADATA, WEIGHTS, load_checkpoint


@pytest.fixture
def ckpt_copy(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "ck"
    shutil.copytree(tiny_checkpoints["charlm"], dst)
    return dst


def test_round_trip_is_bit_identical(tiny_checkpoints: dict[str, Path]) -> None:
    ckpt = load_checkpoint(tiny_checkpoints["charlm"])
    module = ckpt.build()
    saved = load_file(str(ckpt.weights_path))
    state = module.state_dict()
    assert set(saved) == set(state)
    for k, v in state.items():
        assert np.array_equal(v.numpy(), saved[k]) and v.dtype == torch.from_numpy(saved[k]).dtype


def test_weights_are_safetensors_not_pickle(tiny_checkpoints: dict[str, Path]) -> None:
    head = (tiny_checkpoints["lenet"] / WEIGHTS).read_bytes()[:16]
    assert not head.startswith(b"\x80"), "pickle protocol header found"
    header_len = int.from_bytes(head[:8], "little")
    header = json.loads((tiny_checkpoints["lenet"] / WEIGHTS).read_bytes()[8 : 8 + header_len])
    assert "features.0.weight" in header


def test_truncated_weights_are_refused(ckpt_copy: Path) -> None:
    w = ckpt_copy / WEIGHTS
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated or were modified"):
        load_checkpoint(ckpt_copy)


def test_tampered_weights_are_refused(ckpt_copy: Path) -> None:
    w = ckpt_copy / WEIGHTS
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256 does not match"):
        load_checkpoint(ckpt_copy)


def test_edited_metadata_is_refused(ckpt_copy: Path) -> None:
    meta = json.loads((ckpt_copy / METADATA).read_text())
    meta["config"]["hidden"] = 999
    (ckpt_copy / METADATA).write_text(json.dumps(meta))
    with pytest.raises(InputError, match="metadata hash mismatch"):
        load_checkpoint(ckpt_copy)


def test_newer_format_is_refused(ckpt_copy: Path) -> None:
    meta = json.loads((ckpt_copy / METADATA).read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (ckpt_copy / METADATA).write_text(json.dumps(meta))
    with pytest.raises(InputError, match="newer than this edgekit reads"):
        load_checkpoint(ckpt_copy)


@pytest.mark.parametrize("damage", ["missing_dir", "missing_weights", "garbage_json", "not_ours"])
def test_not_a_checkpoint(ckpt_copy: Path, damage: str) -> None:
    if damage == "missing_dir":
        path = ckpt_copy / "nope"
    else:
        path = ckpt_copy
        if damage == "missing_weights":
            (ckpt_copy / WEIGHTS).unlink()
        elif damage == "garbage_json":
            (ckpt_copy / METADATA).write_bytes(b"\x00{not json")
        else:
            (ckpt_copy / METADATA).write_text('{"hello": 1}')
    with pytest.raises(InputError):
        load_checkpoint(path)
