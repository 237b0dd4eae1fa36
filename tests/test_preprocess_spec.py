"""The image preprocessing spec: every field is applied as written or refused with one line.

Each interpolation resizes exactly as Pillow's `Image.resize` with its filter (what torchvision's
Resize does to a PIL image); a bicubic spec matches the torch-side reference (Pillow bicubic, then
ToTensor / Normalize arithmetic in torch); a bicubic image classifier exported with its spec predicts
what torch predicts on the same input; fields the runtime would not apply are refused at export and
in a bundle's manifest.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import edgekit
from edgekit.bundle.parts import DEFAULT_ATOL
from edgekit.errors import InputError
from edgekit.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    check_image_spec,
    preprocess_images,
    resize_pixels,
)

PILLOW_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
SIZE = 12


def _spec(**changes: Any) -> dict[str, Any]:
    spec = {
        "resize": [SIZE, SIZE],
        "interpolation": "bicubic",
        "color": "RGB",
        "scale": 1 / 255,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "layout": "NCHW",
    }
    return {**spec, **changes}


def _images(shapes: list[tuple[int, ...]], seed: int = 0) -> list[np.ndarray]:
    """Smooth-ish random images, so the filters differ visibly (pure noise averages out)."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        coarse = rng.integers(0, 256, (shape[0] // 4 + 1, shape[1] // 4 + 1, *shape[2:]))
        grown = np.repeat(np.repeat(coarse, 4, 0), 4, 1)[: shape[0], : shape[1]]
        noise = rng.integers(-20, 21, grown.shape)
        out.append(np.clip(grown + noise, 0, 255).astype(np.uint8))
    return out


def torch_reference(images: list[np.ndarray], spec: dict[str, Any]) -> torch.Tensor:
    """torchvision's Resize(interpolation) + ToTensor + Normalize on PIL images, without torchvision:
    Pillow's resize with the same filter, then the tensor arithmetic in torch."""
    h, w = spec["resize"]
    mean = torch.tensor(spec["mean"]).view(-1, 1, 1)
    std = torch.tensor(spec["std"]).view(-1, 1, 1)
    rows = []
    for image in images:
        pil = Image.fromarray(image).convert(spec["color"])
        arr = np.asarray(pil.resize((w, h), PILLOW_FILTERS[spec["interpolation"]]))
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255
        rows.append((x - mean) / std)
    return torch.stack(rows)


# --- honoured ---------------------------------------------------------------------------------------


def test_the_accepted_interpolations_are_torchvisions_pil_modes() -> None:
    assert set(INTERPOLATIONS) == set(PILLOW_FILTERS)


@pytest.mark.parametrize("name", sorted(PILLOW_FILTERS))
@pytest.mark.parametrize(("shape", "color"), [((37, 23, 3), "RGB"), ((7, 9), "L")])
def test_each_interpolation_resizes_exactly_as_pillow(
    name: str, shape: tuple[int, ...], color: str
) -> None:
    """Down (37x23 -> 12x12) and up (7x9 -> 12x12), colour and grey."""
    (image,) = _images([shape])
    channels = 3 if color == "RGB" else 1
    spec = check_image_spec(_spec(interpolation=name, color=color, mean=[0.0] * channels,
                                  std=[1.0] * channels))  # fmt: skip
    want = np.asarray(
        Image.fromarray(image).convert(color).resize((SIZE, SIZE), PILLOW_FILTERS[name])
    )
    got = resize_pixels(image, spec)
    np.testing.assert_array_equal(got, want.reshape(SIZE, SIZE, channels))


def test_the_interpolations_give_different_pixels() -> None:
    """So the tests above would notice one filter standing in for another."""
    (image,) = _images([(37, 23, 3)])
    results = {
        n: resize_pixels(image, check_image_spec(_spec(interpolation=n))) for n in INTERPOLATIONS
    }
    names = sorted(results)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not np.array_equal(results[a], results[b]), (a, b)


def test_a_bicubic_spec_matches_the_torch_reference() -> None:
    images = _images([(37, 23, 3), (64, 48, 3), (9, 30, 3)], seed=1)
    spec = _spec(interpolation="bicubic")
    want = torch_reference(images, spec).numpy()
    got = preprocess_images(images, spec)
    assert got.dtype == np.float32 and got.shape == (3, 3, SIZE, SIZE)
    np.testing.assert_allclose(got, want, atol=DEFAULT_ATOL, rtol=0)
    # bilinear pixels are not the reference: the spec's interpolation decides
    bilinear = preprocess_images(images, _spec(interpolation="bilinear"))
    assert np.abs(bilinear - want).max() > 100 * DEFAULT_ATOL


def test_check_fills_in_the_documented_defaults() -> None:
    given = {"resize": (8, 6), "color": "L", "mean": (0.5,), "std": (0.25,)}
    assert check_image_spec(given) == {
        "resize": [8, 6], "interpolation": "bilinear", "color": "L", "scale": 1 / 255,
        "mean": [0.5], "std": [0.25], "layout": "NCHW",
    }  # fmt: skip


def test_a_grey_nhw_layout_is_read_as_nchw() -> None:
    """Older rowlstm checkpoints say NHW: one channel holds the same values in the same order."""
    grey = {"resize": [8, 8], "color": "L", "mean": [0.0], "std": [1.0], "layout": "NHW"}
    assert check_image_spec(grey)["layout"] == "NCHW"
    (image,) = _images([(20, 20)])
    assert preprocess_images([image], grey).shape == (1, 1, 8, 8)


# --- refused ----------------------------------------------------------------------------------------

REFUSED = [
    ({"crop_pct": 0.875}, "unknown fields ['crop_pct']"),
    ({"interpolation": "area"}, "preprocess.interpolation 'area'"),
    ({"interpolation": "BICUBIC"}, "preprocess.interpolation 'BICUBIC'"),
    ({"interpolation": "nearest-exact"}, "preprocess.interpolation 'nearest-exact'"),
    ({"interpolation": 3}, "preprocess.interpolation 3"),
    ({"color": "RGBA"}, "preprocess.color 'RGBA'"),
    ({"layout": "NHWC"}, "preprocess.layout 'NHWC' is not supported"),
    ({"layout": "NHW"}, "preprocess.layout 'NHW' is for grey images (color 'L') only"),
    ({"mean": [0.5]}, "preprocess.mean has 1 values; color 'RGB' has 3 channels"),
    ({"std": [0.2, 0.2]}, "preprocess.std has 2 values"),
    ({"color": "L"}, "preprocess.mean has 3 values; color 'L' has 1 channel"),
    ({"std": [0.2, 0.0, 0.2]}, "preprocess.std must be positive"),
    ({"std": [0.2, -1.0, 0.2]}, "preprocess.std must be positive"),
    ({"mean": [0.5, float("nan"), 0.5]}, "preprocess.mean must be a list of finite numbers"),
    ({"std": [0.2, float("inf"), 0.2]}, "preprocess.std must be a list of finite numbers"),
    ({"mean": "imagenet"}, "preprocess.mean must be a list of finite numbers"),
    ({"scale": 0}, "preprocess.scale must be a finite number > 0"),
    ({"scale": float("nan")}, "preprocess.scale must be a finite number > 0"),
    ({"scale": "1/255"}, "preprocess.scale must be a finite number > 0"),
    ({"resize": 224}, "preprocess.resize must be [height, width]"),
    ({"resize": [224]}, "preprocess.resize must be [height, width]"),
    ({"resize": [0, 224]}, "preprocess.resize must be [height, width]"),
    ({"resize": [22.5, 224]}, "preprocess.resize must be [height, width]"),
    ({"resize": [True, 224]}, "preprocess.resize must be [height, width]"),
    ({"resize": None}, "preprocess.resize must be [height, width]"),
]


@pytest.mark.parametrize(("change", "message"), REFUSED)
def test_each_bad_field_is_refused_naming_it(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as info:
        check_image_spec(_spec(**change))
    text = str(info.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize("missing", ["resize", "color", "mean", "std"])
def test_a_missing_required_field_is_refused(missing: str) -> None:
    spec = _spec()
    del spec[missing]
    with pytest.raises(InputError, match=f"preprocess is missing {missing}"):
        check_image_spec(spec)


def test_a_spec_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InputError, match="preprocess must be an object, got list"):
        check_image_spec([SIZE, SIZE])


def test_the_runtime_refuses_a_spec_it_would_not_apply() -> None:
    """Code that hands a spec to the task APIs by hand meets the same rules."""
    with pytest.raises(InputError, match="preprocess.interpolation 'area'"):
        preprocess_images(_images([(20, 20, 3)]), _spec(interpolation="area"))


# --- end to end: a user's image classifier ----------------------------------------------------------


class TinyImageNet(nn.Module):
    """(B, 3, 12, 12) -> (B, 4) logits; a linear read of every pixel, so the resize shows."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * SIZE * SIZE, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


def _export(out: Path, **changes: Any) -> tuple[Path, dict[str, Any]]:
    torch.manual_seed(0)
    bundle, manifest = edgekit.export(
        TinyImageNet(), torch.randn(2, 3, SIZE, SIZE), out, input_names=["image"],
        dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}}, task="classify",
        labels=list("abcd"), preprocess={**_spec(interpolation="bicubic"), **changes},
    )  # fmt: skip
    return bundle, manifest


@pytest.fixture(scope="module")
def bicubic_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("bicubic") / "b")[0]


def test_a_bicubic_classifier_predicts_as_torch_on_pillow_bicubic_input(
    bicubic_bundle: Path,
) -> None:
    manifest = json.loads((bicubic_bundle / "edgekit.json").read_text())
    assert manifest["preprocess"]["interpolation"] == "bicubic"
    images = _images([(40, 31, 3), (64, 64, 3), (13, 50, 3)], seed=3)
    torch.manual_seed(0)
    module = TinyImageNet().eval()
    with torch.no_grad():
        want = torch.softmax(module(torch_reference(images, manifest["preprocess"])), 1).numpy()
        bilinear = torch_reference(images, {**manifest["preprocess"], "interpolation": "bilinear"})
        other = torch.softmax(module(bilinear), 1).numpy()
    model = edgekit.load(bicubic_bundle)
    got = model.predict_proba(images)
    np.testing.assert_allclose(got, want, atol=DEFAULT_ATOL)
    assert np.abs(other - want).max() > 10 * DEFAULT_ATOL  # the interpolation shows in the answer
    labels = [p.label for p in model.predict(images)]
    assert labels == ["abcd"[i] for i in want.argmax(1)]


def test_a_tampered_interpolation_in_a_bundle_is_refused_at_load(
    bicubic_bundle: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bicubic_bundle, copy)
    path = copy / "edgekit.json"
    doc = json.loads(path.read_text())
    doc["preprocess"]["interpolation"] = "area"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="preprocess.interpolation 'area' is not one of"):
        edgekit.load(copy)


def test_an_unknown_interpolation_is_refused_at_export(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        _export(tmp_path / "b", interpolation="area")
    text = str(info.value)
    assert "preprocess.interpolation 'area' is not one of nearest, bilinear, bicubic" in text
    assert "\n" not in text and not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resize": [16, 16]}, "preprocess makes images (batch, 3, 16, 16)"),
        ({"color": "L", "mean": [0.5], "std": [0.5]}, "preprocess makes images (batch, 1, 12, 12)"),
    ],
)
def test_a_spec_that_does_not_fit_the_image_input_is_refused(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _export(tmp_path / "b", **changes)


def test_a_spec_on_a_task_that_would_ignore_it_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="task 'generic' would ignore it"):
        edgekit.export(
            TinyImageNet(), torch.randn(2, 3, SIZE, SIZE), tmp_path / "b", preprocess=_spec()
        )


FACTORY = """
import torch
from torch import nn


def make():
    return {
        "module": nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 2)),
        "example_inputs": torch.zeros(2, 3, 12, 12),
        "task": "classify",
        "preprocess": {"resize": [12, 12], "interpolation": "area", "color": "RGB",
                       "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    }
"""


def test_the_command_line_refuses_an_unknown_interpolation_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    source = tmp_path / "mine.py"
    source.write_text(FACTORY)
    out = tmp_path / "b"
    result = CliRunner().invoke(app, ["export", "--module", f"{source}:make", "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "preprocess.interpolation 'area' is not one of" in lines[0]
    assert not out.exists()
