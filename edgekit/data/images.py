"""Image folders (one subfolder per class), the seed's augmentations, and a synthetic fallback set."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.errors import InputError
from edgekit.preprocess import preprocess_images

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


@dataclass
class ImageSet:
    images: list[Any]  # PIL images, decoded once
    labels: list[int]
    classes: list[str]
    description: dict
    skipped: list[str] = field(default_factory=list)  # files that could not be decoded


def read_image_folder(root: str | Path) -> ImageSet:
    """Read `root/<class>/<image>`; corrupt and non-image files are skipped with a count and a warning."""
    pil = require("PIL.Image", "reading image folders")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder not found: {root} (expected one subfolder per class)")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise InputError(f"{root}: expected at least 2 class subfolders, found {len(class_dirs)}")
    images, labels, skipped = [], [], []
    for label, class_dir in enumerate(class_dirs):
        count = 0
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            try:
                with pil.open(path) as im:
                    im.load()
                    images.append(im.convert("RGB"))
            except (OSError, SyntaxError, ValueError):
                skipped.append(str(path))
                continue
            labels.append(label)
            count += 1
        if count == 0:
            raise InputError(f"class folder {class_dir} has no valid image")
    if skipped:
        log.warning(
            "skipped %d file(s) that are not readable images, e.g. %s", len(skipped), skipped[0]
        )
    desc = {"source": str(root.resolve()), "images": len(images), "skipped": len(skipped)}
    return ImageSet(images, labels, [d.name for d in class_dirs], desc, skipped)


def synthetic_shapes(count: int, size: int, seed: int) -> ImageSet:
    """A generated two-class set (SYNTHETIC, not photos): filled ellipses vs. striped squares.

    Colours, positions, sizes and backgrounds are random, so the classes differ only by shape.
    """
    pil = require("PIL.Image", "generating images")
    draw_mod = require("PIL.ImageDraw", "generating images")
    rng = random.Random(seed)
    images, labels = [], []
    for i in range(count):
        label = i % 2
        bg = tuple(rng.randrange(0, 256) for _ in range(3))
        fg = tuple((c + 128 + rng.randrange(-40, 40)) % 256 for c in bg)
        im = pil.new("RGB", (size, size), bg)
        draw = draw_mod.Draw(im)
        s = rng.randrange(size // 3, size * 3 // 4)
        x0, y0 = rng.randrange(0, size - s), rng.randrange(0, size - s)
        if label == 0:
            draw.ellipse([x0, y0, x0 + s, y0 + s], fill=fg)
        else:
            step = max(3, s // 6)
            for k in range(0, s, 2 * step):
                draw.rectangle([x0, y0 + k, x0 + s, y0 + min(s, k + step)], fill=fg)
        images.append(im)
        labels.append(label)
    desc = {"source": "builtin:synthetic-shapes", "synthetic": True, "images": count, "seed": seed}
    return ImageSet(images, labels, ["ellipse", "stripes"], desc)


def augment(image: Any, size: int, rng: random.Random) -> Any:
    """The seed's training augmentations, in Pillow: resize to 150/128 of size, random crop back to
    size, horizontal flip, colour jitter (brightness .5, contrast .3, saturation .4, hue .1), rotation
    up to 15 degrees."""
    pil = require("PIL.Image", "augmenting images")
    enhance = require("PIL.ImageEnhance", "augmenting images")
    big = round(size * 150 / 128)
    im = image.convert("RGB").resize((big, big), pil.Resampling.BILINEAR)
    x, y = rng.randrange(0, big - size + 1), rng.randrange(0, big - size + 1)
    im = im.crop((x, y, x + size, y + size))
    if rng.random() < 0.5:
        im = im.transpose(pil.Transpose.FLIP_LEFT_RIGHT)
    for op, amount in ((enhance.Brightness, 0.5), (enhance.Contrast, 0.3), (enhance.Color, 0.4)):
        im = op(im).enhance(rng.uniform(1 - amount, 1 + amount))
    hsv = np.asarray(im.convert("HSV"), dtype=np.uint8).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(rng.uniform(-0.1, 0.1) * 255)) % 256
    im = pil.fromarray(hsv, "HSV").convert("RGB")
    return im.rotate(rng.uniform(-15, 15), resample=pil.Resampling.BILINEAR)


def batch_arrays(images: list[Any], spec: dict, augment_rng: random.Random | None) -> np.ndarray:
    """A list of PIL images -> float32 (N, C, H, W); augmented when a generator is given."""
    if augment_rng is not None:
        size = spec["resize"][0]
        images = [augment(im, size, augment_rng) for im in images]
    return preprocess_images(images, spec)  # the runtime's own preprocessing, shared
