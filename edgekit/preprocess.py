"""Image preprocessing shared by training (evaluation transform) and the runtime.

Torch-free (numpy + Pillow) so the runtime reproduces exactly what training evaluated on. The spec is a
plain dict recorded in the checkpoint and the bundle manifest:

    {"resize": [H, W], "interpolation": "bilinear", "color": "RGB" | "L",
     "scale": 1/255, "mean": [...], "std": [...], "layout": "NCHW"}

`resize` is the exact output size (no aspect-preserving resize, no crop). `interpolation` is one of
torchvision's InterpolationMode names for PIL images, each Pillow's own filter (antialiased as Pillow
does): nearest, bilinear, bicubic, lanczos, box, hamming. Pixels are multiplied by `scale`, then
`(x - mean) / std` per channel (one entry per channel: 3 for RGB, 1 for L). Only the NCHW layout is
implemented (a grey spec may say NHW: the same values). `check_image_spec` holds every rule: export
and bundle loading refuse any other field or value with one line, and the runtime applies only specs
it accepts.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision InterpolationMode name -> Pillow's Image.Resampling member, as torchvision maps them
INTERPOLATIONS = {
    "nearest": "NEAREST",
    "bilinear": "BILINEAR",
    "bicubic": "BICUBIC",
    "lanczos": "LANCZOS",
    "box": "BOX",
    "hamming": "HAMMING",
}
CHANNELS = {"RGB": 3, "L": 1}  # color mode -> channels
LAYOUTS = ("NCHW",)
# what older rowlstm checkpoints recorded for their grey images: with one channel, the same values in
# the same order as NCHW, which is what their graphs take (batch, 1, H, W); read as NCHW
GREY_LAYOUT = "NHW"
REQUIRED = ("resize", "color", "mean", "std")
DEFAULTS: dict[str, Any] = {"interpolation": "bilinear", "scale": 1.0 / 255.0, "layout": "NCHW"}
FIELDS = (*REQUIRED, *DEFAULTS)


def image_spec(
    size: int, color: str, mean: Sequence[float], std: Sequence[float]
) -> dict[str, Any]:
    return {
        "resize": [size, size],
        "interpolation": "bilinear",
        "color": color,
        "scale": 1.0 / 255.0,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "layout": "NCHW",
    }


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(key: str, value: Any, color: Any) -> list[str]:
    """Problems of `mean` / `std`: finite numbers, one per channel of `color` (std all > 0)."""
    if not isinstance(value, (list, tuple)) or not all(_real(v) for v in value):
        return [f"preprocess.{key} must be a list of finite numbers, got {value!r}"]
    found = []
    channels = CHANNELS.get(color) if isinstance(color, str) else None
    if channels is not None and len(value) != channels:
        found.append(
            f"preprocess.{key} has {len(value)} values; color {color!r} has {channels} "
            f"channel{'s' if channels > 1 else ''}"
        )
    if key == "std" and any(v <= 0 for v in value):
        found.append(f"preprocess.std must be positive, got {list(value)}")
    return found


def image_spec_problems(spec: Any) -> list[str]:
    """Every way `spec` breaks the rules above (empty: it is a spec the runtime applies as written)."""
    if not isinstance(spec, Mapping):
        return [f"preprocess must be an object, got {type(spec).__name__}"]
    found = []
    unknown = sorted(str(k) for k in spec if k not in FIELDS)
    if unknown:
        found.append(f"preprocess has unknown fields {unknown}; known: {', '.join(FIELDS)}")
    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        found.append(f"preprocess is missing {', '.join(missing)}")
    resize = spec.get("resize", [1, 1])
    if (
        not isinstance(resize, (list, tuple))
        or len(resize) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in resize)
        or not all(v > 0 for v in resize)
    ):
        found.append(
            f"preprocess.resize must be [height, width], two positive ints, got {resize!r}"
        )
    interpolation = spec.get("interpolation", DEFAULTS["interpolation"])
    if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
        found.append(
            f"preprocess.interpolation {interpolation!r} is not one of {', '.join(INTERPOLATIONS)}"
        )
    color = spec.get("color")
    if "color" in spec and (not isinstance(color, str) or color not in CHANNELS):
        found.append(f"preprocess.color {color!r} is not one of {', '.join(CHANNELS)}")
    scale = spec.get("scale", DEFAULTS["scale"])
    if not _real(scale) or scale <= 0:
        found.append(f"preprocess.scale must be a finite number > 0, got {scale!r}")
    for key in ("mean", "std"):
        if key in spec:
            found += _numbers(key, spec[key], color)
    layout = spec.get("layout", DEFAULTS["layout"])
    if layout == GREY_LAYOUT and color not in (None, "L"):
        found.append(f"preprocess.layout {layout!r} is for grey images (color 'L') only")
    elif layout not in (*LAYOUTS, GREY_LAYOUT):
        found.append(
            f"preprocess.layout {layout!r} is not supported (only {', '.join(LAYOUTS)} is implemented)"
        )
    return found


def check_image_spec(spec: Any) -> dict[str, Any]:
    """`spec` with its defaults filled in, as plain JSON values; any problem is one InputError."""
    found = image_spec_problems(spec)
    if found:
        raise InputError("; ".join(found))
    full = {**DEFAULTS, **spec}
    return {
        "resize": [int(v) for v in full["resize"]],
        "interpolation": full["interpolation"],
        "color": full["color"],
        "scale": float(full["scale"]),
        "mean": [float(v) for v in full["mean"]],
        "std": [float(v) for v in full["std"]],
        "layout": LAYOUTS[0],  # the one implemented (a grey NHW holds the same values)
    }


def _pil() -> Any:
    from edgekit._optional import require

    return require("PIL.Image", "decoding images")


def open_image(path: str | Path) -> Any:
    """Open an image file fully (so a truncated file fails here, not later)."""
    image = _pil().open(path)
    image.load()
    return image


def to_pil(image: Any, color: str) -> Any:
    """A path, PIL image or uint8 HWC / HW array -> PIL image in `color` mode."""
    pil = _pil()
    if isinstance(image, (str, Path)):
        image = open_image(image)
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"image arrays must be uint8 HWC, got dtype {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:  # HW1 grey -> HW
            image = image[:, :, 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ValueError(f"image arrays must be HW, HW1, HW3 or HW4, got shape {image.shape}")
        image = pil.fromarray(image)
    if image.mode != color:
        image = image.convert(color)
    return image


def normalise(pixels: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W), scaled and standardised."""
    x = pixels.astype(np.float32) * np.float32(spec["scale"])
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def resize_pixels(image: Any, spec: dict[str, Any]) -> np.ndarray:
    """One image -> uint8 (H, W, C) at the spec's size, with Pillow's filter for its interpolation
    (what torchvision's Resize does to a PIL image). `spec` is a checked one (check_image_spec)."""
    pil = _pil()
    h, w = spec["resize"]
    resample = getattr(pil.Resampling, INTERPOLATIONS[spec["interpolation"]])
    im = to_pil(image, spec["color"])
    if im.size != (w, h):
        im = im.resize((w, h), resample)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def preprocess_images(images: Sequence[Any], spec: Mapping[str, Any]) -> np.ndarray:
    """Paths / PIL images / uint8 arrays -> float32 (N, C, H, W) ready for the model."""
    checked = check_image_spec(spec)
    pixels = np.stack([resize_pixels(im, checked) for im in images])
    return normalise(pixels, checked)
