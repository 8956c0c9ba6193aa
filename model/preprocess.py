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

from model.decode_memory import DecodeBudget, DecodeTooLarge, decode_footprint
from model.files import IMAGE_FORMATS

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
        return Image.fromarray(_integer_to_8bit(np.asarray(img))).convert("RGB")
    if img.mode == "F":
        return Image.fromarray(_float_to_8bit(np.array(img, dtype=np.float32))).convert("RGB")
    return img.convert("RGB")


def _integer_to_8bit(values: np.ndarray) -> np.ndarray:
    """16- or 32-bit grey levels as 8 bits: 0-65535 (0-255 when nothing exceeds it) onto 0-255,
    rounded, through a lookup table (no float64 copies of a 100 M-pixel picture)."""
    top = 65535 if values.max() > 255 else 255
    table = np.minimum((np.arange(65536, dtype=np.uint32) * 255 + top // 2) // top, 255).astype(np.uint8)
    return table[values if values.dtype == np.uint16 else np.clip(values, 0, 65535)]


def _float_to_8bit(values: np.ndarray) -> np.ndarray:
    """Float grey levels stretched from their minimum to their maximum onto 0-255, in place."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    values -= lo
    values *= 255.0 / (hi - lo)
    np.nan_to_num(values, copy=False, nan=0.0)
    return values.astype(np.uint8)


def open_image(source: BinaryIO) -> Image.Image:
    """``Image.open`` trying only the product's formats (model/files.py ``IMAGE_FORMATS``) that this
    installation can read."""
    Image.init()
    return Image.open(source, formats=[f for f in IMAGE_FORMATS if f in Image.OPEN])


@contextlib.contextmanager
def decode_errors(name: object) -> Iterator[None]:
    """Turn whatever Pillow raises for a bad file into one ``ImageDecodeError`` naming ``name``."""
    try:
        yield
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, DecodeTooLarge) as exc:
        raise ImageDecodeError(f"{name}: image too large ({exc})") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name}: not an image, or not one of the formats read ({', '.join(IMAGE_FORMATS)})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"{name}: cannot decode image ({exc})") from exc


def finish_decode(img: Image.Image, target_long_side: int | None = None,
                  budget: DecodeBudget | None = None) -> Image.Image:
    """Decode an opened image to oriented RGB; JPEGs use draft mode (DCT-domain downscaling by 1/2,
    1/4 or 1/8) when ``target_long_side`` allows, never below that size. With ``budget``, the
    decode first reserves its footprint there (waits for room; refused if it can never fit)."""
    if target_long_side and img.format == "JPEG":
        w, h = img.size
        scale = target_long_side / max(w, h)
        if scale < 1:
            img.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
    with budget.reserve(decode_footprint(img)) if budget is not None else contextlib.nullcontext():
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
        return finish_decode(open_image(source), target_long_side)


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
