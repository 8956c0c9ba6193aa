"""Real photographs for tests: the ones scikit-image ships, and libraries made from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")
PHOTOS = ("coffee", "rocket", "astronaut", "chelsea", "camera", "immunohistochemistry")


def skimage_photo(name: str) -> Image.Image:
    """One of scikit-image's bundled photographs as an RGB PIL image."""
    arr = getattr(skimage.data, name)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return Image.fromarray(arr.astype(np.uint8)).convert("RGB")


def many_photos(root: Path, count: int) -> Path:
    """``count`` distinct JPEGs (crops and sizes of the bundled photos): a job that takes seconds."""
    root.mkdir(parents=True)
    sources = [skimage_photo(name) for name in PHOTOS]
    for i in range(count):
        img = sources[i % len(sources)]
        side = 0.5 + 0.5 * (i // len(sources)) / (count // len(sources) + 1)
        w, h = int(img.width * side), int(img.height * side)
        img.crop((0, 0, w, h)).save(root / f"p{i:04d}.jpg", quality=85)
    return root
