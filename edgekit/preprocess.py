"""Image preprocessing shared by training (evaluation transform) and the runtime.

Torch-free (numpy + Pillow) so the runtime reproduces exactly what training evaluated on. The spec is a
plain dict recorded in the checkpoint and the bundle manifest:

    {"resize": [H, W], "interpolation": "bilinear", "color": "RGB" | "L",
     "scale": 1/255, "mean": [...], "std": [...], "layout": "NCHW"}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    """One image -> uint8 (H, W, C) at the spec's size (Pillow bilinear, antialiased)."""
    pil = _pil()
    h, w = spec["resize"]
    im = to_pil(image, spec["color"])
    if im.size != (w, h):
        im = im.resize((w, h), pil.Resampling.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def preprocess_images(images: Sequence[Any], spec: dict[str, Any]) -> np.ndarray:
    """Paths / PIL images / uint8 arrays -> float32 (N, C, H, W) ready for the model."""
    pixels = np.stack([resize_pixels(im, spec) for im in images])
    return normalise(pixels, spec)
