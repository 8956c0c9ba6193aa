"""Image decoding and preprocessing for the backbone.

The whole image is kept with its aspect ratio (near-duplicate queries are often crops or padded
copies: a centre crop drops evidence and squashing distorts it): the long side is scaled to
``image_size`` and both sides are rounded to multiples of the patch size.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# (pixel / 255 - mean) / std as one multiply-add per channel on the uint8 planes
_SCALE = (1.0 / (255.0 * IMAGENET_STD)).astype(np.float32).reshape(3, 1, 1)
_OFFSET = (-IMAGENET_MEAN / IMAGENET_STD).astype(np.float32).reshape(3, 1, 1)


class ImageDecodeError(ValueError):
    """An input could not be read or decoded as an image; the message names the input and the reason."""


def model_input_size(width: int, height: int, image_size: int = 224, patch_size: int = 14) -> tuple[int, int]:
    """(width, height) fed to the model: long side ≈ ``image_size``, both multiples of the patch."""
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid image size {width}x{height}")
    scale = image_size / max(width, height)
    w = max(patch_size, round(width * scale / patch_size) * patch_size)
    h = max(patch_size, round(height * scale / patch_size) * patch_size)
    return w, h


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode → RGB; transparency is flattened onto white, palette/CMYK/16-bit/grey converted."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


@contextlib.contextmanager
def decode_errors(name: object) -> Iterator[None]:
    """Turn whatever Pillow raises for a bad file into one ``ImageDecodeError`` naming ``name``."""
    try:
        yield
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{name}: image too large ({exc})") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name}: not an image, or a format Pillow cannot read") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"{name}: cannot decode image ({exc})") from exc


def finish_decode(img: Image.Image, target_long_side: int | None = None) -> Image.Image:
    """Decode an opened image to oriented RGB; JPEGs use draft mode (DCT-domain downscaling by 1/2,
    1/4 or 1/8) when ``target_long_side`` allows, never below that size."""
    if target_long_side and img.format == "JPEG":
        w, h = img.size
        scale = target_long_side / max(w, h)
        if scale < 1:
            img.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
    img.load()
    return to_rgb(ImageOps.exif_transpose(img))


def load_image(source: str | os.PathLike | BinaryIO, target_long_side: int | None = None) -> Image.Image:
    """Decode an image file to RGB with EXIF orientation applied.

    With ``target_long_side``, JPEGs are decoded in draft mode, never below the size the model
    needs: large photos decode several times faster. GIFs and other animations give their first frame.
    """
    name = getattr(source, "name", source)
    with decode_errors(name), contextlib.ExitStack() as stack:
        if isinstance(source, (str, os.PathLike)):
            try:
                source = stack.enter_context(open(source, "rb"))  # closed once the pixels are loaded
            except OSError as exc:
                raise ImageDecodeError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
        return finish_decode(Image.open(source), target_long_side)


def preprocess(img: Image.Image, image_size: int = 224, patch_size: int = 14) -> torch.Tensor:
    """RGB PIL image → normalised (3, H, W) float tensor, aspect ratio kept, sides multiples of 14."""
    img = to_rgb(img)
    size = model_input_size(img.width, img.height, image_size, patch_size)
    if img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    planes = np.asarray(img).transpose(2, 0, 1)  # uint8 (3, H, W), a view
    out = np.empty(planes.shape, dtype=np.float32)
    np.multiply(planes, _SCALE, out=out)
    out += _OFFSET
    return torch.from_numpy(out)
