"""Shared fixtures: real photographs shipped with scikit-image, and small seeded backbones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")


def skimage_photo(name: str) -> Image.Image:
    """One of scikit-image's bundled photographs as an RGB PIL image."""
    import skimage.data

    arr = getattr(skimage.data, name)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return Image.fromarray(arr.astype(np.uint8)).convert("RGB")


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    return {name: skimage_photo(name) for name in PHOTO_NAMES}


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
