"""Strong edits for the copy-detection objective: the kinds of changes copies go through online.

Each view of a photo is a random chain of edits (crop, rotation, flip, perspective, colour,
grayscale, blur, noise, JPEG re-encoding, text and sticker overlays, padding, screenshot-like
framing), ending at a fixed square size for batching. All randomness comes from the ``rng``.
"""

from __future__ import annotations

import io
import random
import string

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from model.train.augment import color_jitter, to_normalized_tensor


def _random_colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def crop(img: Image.Image, rng: random.Random, min_area: float = 0.3) -> Image.Image:
    w, h = img.size
    area = rng.uniform(min_area, 1.0)
    aspect = rng.uniform(0.6, 1.6)
    cw = max(8, min(w, int(round((area * w * h * aspect) ** 0.5))))
    ch = max(8, min(h, int(round((area * w * h / aspect) ** 0.5))))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((left, top, left + cw, top + ch))


def rotate(img: Image.Image, rng: random.Random) -> Image.Image:
    if rng.random() < 0.2:
        return img.rotate(rng.choice([90, 180, 270]), expand=True)
    return img.rotate(rng.uniform(-30, 30), expand=rng.random() < 0.5, fillcolor=_random_colour(rng),
                      resample=Image.Resampling.BILINEAR)


def perspective(img: Image.Image, rng: random.Random, strength: float = 0.25) -> Image.Image:
    w, h = img.size
    dx, dy = strength * w, strength * h
    corners = [(rng.uniform(0, dx), rng.uniform(0, dy)), (w - rng.uniform(0, dx), rng.uniform(0, dy)),
               (w - rng.uniform(0, dx), h - rng.uniform(0, dy)), (rng.uniform(0, dx), h - rng.uniform(0, dy))]
    # Solve for the 8 coefficients mapping output corners to these input corners.
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, corners):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    coeffs = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64))
    return img.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR,
                         fillcolor=_random_colour(rng))


def add_noise(img: Image.Image, rng: random.Random) -> Image.Image:
    sigma = rng.uniform(3, 25)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, sigma, (img.height, img.width, 3))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


def jpeg(img: Image.Image, rng: random.Random) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(8, 70))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def text_overlay(img: Image.Image, rng: random.Random) -> Image.Image:
    img = img.copy()
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 3)):
        words = "".join(rng.choice(string.ascii_letters + string.digits + "  #@!") for _ in range(rng.randint(4, 20)))
        size = max(8, int(min(img.size) * rng.uniform(0.05, 0.2)))
        xy = (rng.randint(0, max(1, img.width - size)), rng.randint(0, max(1, img.height - size)))
        draw.text(xy, words, fill=_random_colour(rng), font=_font(size),
                  stroke_width=rng.choice([0, 1, 2]), stroke_fill=_random_colour(rng))
    return img


def sticker_overlay(img: Image.Image, rng: random.Random) -> Image.Image:
    """Emoji-like stickers: filled circles, faces and polygons over 5–25% of the picture."""
    img = img.copy()
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 3)):
        side = int(min(img.size) * rng.uniform(0.2, 0.5))
        x, y = rng.randint(0, max(1, img.width - side)), rng.randint(0, max(1, img.height - side))
        kind = rng.random()
        if kind < 0.5:
            draw.ellipse((x, y, x + side, y + side), fill=(255, 204, 0), outline=(0, 0, 0), width=max(1, side // 30))
            eye = side // 8
            draw.ellipse((x + side // 4, y + side // 3, x + side // 4 + eye, y + side // 3 + eye), fill=(0, 0, 0))
            draw.ellipse((x + 5 * side // 8, y + side // 3, x + 5 * side // 8 + eye, y + side // 3 + eye), fill=(0, 0, 0))
            draw.arc((x + side // 4, y + side // 3, x + 3 * side // 4, y + 3 * side // 4), 20, 160, fill=(0, 0, 0),
                     width=max(1, side // 20))
        else:
            pts = [(x + rng.randint(0, side), y + rng.randint(0, side)) for _ in range(rng.randint(3, 6))]
            draw.polygon(pts, fill=_random_colour(rng))
    return img


def pad(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    border = [int(rng.uniform(0, 0.4) * s) for s in (w, h, w, h)]
    return ImageOps.expand(img, border=tuple(border), fill=_random_colour(rng) if rng.random() < 0.5 else (0, 0, 0))


def screenshot_frame(img: Image.Image, rng: random.Random) -> Image.Image:
    """Place the picture inside an app-like canvas: a title bar, margins and lines of text."""
    w, h = img.size
    scale = rng.uniform(0.5, 0.9)
    inner = img.resize((max(8, int(w * scale)), max(8, int(h * scale))))
    background = rng.choice([(255, 255, 255), (245, 245, 245), (24, 24, 27), (0, 0, 0)])
    canvas = Image.new("RGB", (w, int(h * rng.uniform(1.0, 1.6))), background)
    bar = int(canvas.height * rng.uniform(0.05, 0.12))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, w, bar), fill=_random_colour(rng))
    left = rng.randint(0, w - inner.width)
    top = rng.randint(bar, max(bar, canvas.height - inner.height))
    canvas.paste(inner, (left, top))
    ink = (200, 200, 200) if sum(background) < 300 else (60, 60, 60)
    for i in range(rng.randint(1, 4)):
        y = min(canvas.height - 4, top + inner.height + 6 + 12 * i)
        draw.line((8, y, int(w * rng.uniform(0.3, 0.9)), y), fill=ink, width=3)
    return canvas


class CopyViews:
    """Two views of a photo, the positive pair of the copy objective.

    With probability ``reference_share`` the first view is the photo as a library would hold it
    (whole, at most lightly cropped, recoloured or re-encoded) and only the second is strongly
    edited: that is the search the product serves, and two independent strong crops of one photo
    can share no content at all. Otherwise both views are strongly edited.
    """

    def __init__(self, size: int = 112, reference_share: float = 0.0) -> None:
        if not 0.0 <= reference_share <= 1.0:
            raise ValueError(f"reference_share must be within [0, 1], got {reference_share}")
        self.size = size
        self.reference_share = reference_share

    def reference(self, img: Image.Image, rng: random.Random) -> Image.Image:
        """A library-side view: the whole photo with mild, realistic changes."""
        if rng.random() < 0.3:
            img = crop(img, rng, min_area=0.8)
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        if rng.random() < 0.3:
            img = color_jitter(img, rng, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02)
        if rng.random() < 0.3:
            img = jpeg(img, rng)
        return self._to_square(img, rng)

    def edit(self, img: Image.Image, rng: random.Random) -> Image.Image:
        if rng.random() < 0.7:
            img = crop(img, rng)
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        if rng.random() < 0.3:
            img = rotate(img, rng)
        if rng.random() < 0.2:
            img = perspective(img, rng)
        if rng.random() < 0.7:
            img = color_jitter(img, rng, brightness=0.6, contrast=0.6, saturation=0.6, hue=0.15)
        if rng.random() < 0.2:
            img = ImageOps.grayscale(img).convert("RGB")
        if rng.random() < 0.3:
            img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.5, 3.0)))
        if rng.random() < 0.2:
            img = add_noise(img, rng)
        overlay = rng.random()
        if overlay < 0.3:
            img = text_overlay(img, rng)
        elif overlay < 0.5:
            img = sticker_overlay(img, rng)
        framing = rng.random()
        if framing < 0.2:
            img = pad(img, rng)
        elif framing < 0.35:
            img = screenshot_frame(img, rng)
        if rng.random() < 0.5:
            img = jpeg(img, rng)
        return self._to_square(img, rng)

    def _to_square(self, img: Image.Image, rng: random.Random) -> Image.Image:
        """Squash or letterbox to size × size (batches need one shape; inference keeps the aspect)."""
        if rng.random() < 0.5:
            return img.resize((self.size, self.size), Image.Resampling.BICUBIC)
        return ImageOps.pad(img, (self.size, self.size), color=_random_colour(rng) if rng.random() < 0.3 else (0, 0, 0))

    def __call__(self, img: Image.Image, rng: random.Random) -> dict[str, list[torch.Tensor]]:
        first = self.reference(img, rng) if rng.random() < self.reference_share else self.edit(img, rng)
        return {"views": [to_normalized_tensor(first), to_normalized_tensor(self.edit(img, rng))]}
