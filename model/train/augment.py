"""DINOv2's multi-crop augmentations, written on PIL so they run without torchvision.

Every random choice comes from the ``random.Random`` passed in, so a sample's crops are a pure
function of its seed: training resumes bit-exactly whatever the number of loader workers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from model.preprocess import IMAGENET_MEAN, IMAGENET_STD


def random_resized_crop(img: Image.Image, size: int, scale: tuple[float, float], rng: random.Random,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """A random region of ``scale`` × the area and aspect ``ratio`` (log-uniform), resized to size × size."""
    w, h = img.size
    area = w * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return img.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch))
    side = min(w, h)  # fallback: the central square
    left, top = (w - side) // 2, (h - side) // 2
    return img.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))


def shift_hue(img: Image.Image, fraction: float) -> Image.Image:
    """Rotate the hue by ``fraction`` of the colour circle (−0.5..0.5)."""
    h, s, v = img.convert("HSV").split()
    h = h.point(lambda x: (x + int(round(fraction * 255))) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def color_jitter(img: Image.Image, rng: random.Random, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.2, hue: float = 0.1) -> Image.Image:
    """Brightness, contrast, saturation and hue changes in a random order."""
    ops = [
        lambda im: ImageEnhance.Brightness(im).enhance(rng.uniform(1 - brightness, 1 + brightness)),
        lambda im: ImageEnhance.Contrast(im).enhance(rng.uniform(1 - contrast, 1 + contrast)),
        lambda im: ImageEnhance.Color(im).enhance(rng.uniform(1 - saturation, 1 + saturation)),
        lambda im: shift_hue(im, rng.uniform(-hue, hue)),
    ]
    rng.shuffle(ops)
    for op in ops:
        img = op(img)
    return img


def to_normalized_tensor(img: Image.Image) -> torch.Tensor:
    arr = (np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


@dataclass(frozen=True)
class MultiCropConfig:
    global_size: int = 224
    local_size: int = 98
    n_local: int = 8
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)


class MultiCrop:
    """2 global + ``n_local`` local crops with DINOv2's photometric augmentations."""

    def __init__(self, config: MultiCropConfig) -> None:
        self.config = config

    def _photometric(self, img: Image.Image, rng: random.Random, blur_p: float, solarize_p: float) -> Image.Image:
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        if rng.random() < 0.8:
            img = color_jitter(img, rng)
        if rng.random() < 0.2:
            img = ImageOps.grayscale(img).convert("RGB")
        if rng.random() < blur_p:
            img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
        if rng.random() < solarize_p:
            img = ImageOps.solarize(img, threshold=128)
        return img

    def __call__(self, img: Image.Image, rng: random.Random) -> dict[str, list[torch.Tensor]]:
        c = self.config
        g1 = self._photometric(random_resized_crop(img, c.global_size, c.global_scale, rng), rng, 1.0, 0.0)
        g2 = self._photometric(random_resized_crop(img, c.global_size, c.global_scale, rng), rng, 0.1, 0.2)
        local = [
            self._photometric(random_resized_crop(img, c.local_size, c.local_scale, rng), rng, 0.5, 0.0)
            for _ in range(c.n_local)
        ]
        return {"global": [to_normalized_tensor(g1), to_normalized_tensor(g2)],
                "local": [to_normalized_tensor(x) for x in local]}
