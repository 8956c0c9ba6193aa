"""Edited copies for the quality benchmark, one function per edit family.

Written separately from the training augmentations (model/train/copy_augment.py) so the
benchmark does not simply replay the training distribution: other parameters, other overlays.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def reencode(img, rng):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(20, 40))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def resize(img, rng):
    s = rng.uniform(0.35, 0.6)
    return img.resize((max(16, int(img.width * s)), max(16, int(img.height * s))), Image.Resampling.BILINEAR)


def _crop_area(img, rng, area):
    w, h = img.size
    aspect = rng.uniform(0.75, 1.33)
    cw = min(w, int((area * w * h * aspect) ** 0.5))
    ch = min(h, int((area * w * h / aspect) ** 0.5))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((x, y, x + cw, y + ch))


def crop_mild(img, rng):
    return _crop_area(img, rng, rng.uniform(0.7, 0.9))


def crop_strong(img, rng):
    return _crop_area(img, rng, rng.uniform(0.3, 0.45))


def rotate(img, rng):
    return img.rotate(rng.choice([-1, 1]) * rng.uniform(10, 25), expand=True, fillcolor=(0, 0, 0),
                      resample=Image.Resampling.BICUBIC)


def flip(img, rng):
    return ImageOps.mirror(img)


def colour(img, rng):
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.2, 1.8))
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.6, 1.4))
    return ImageEnhance.Contrast(img).enhance(rng.uniform(0.6, 1.4))


def blur(img, rng):
    return img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(1.5, 3.5)))


def noise(img, rng):
    arr = np.asarray(img, np.float32)
    arr = arr + np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(10, 25), arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def text(img, rng):
    img = img.copy()
    d = ImageDraw.Draw(img)
    captions = ["when the weekend finally arrives", "NO WAY", "tag a friend who needs this", "2026 © photo",
                "this is fine", "SALE 50% OFF"]
    size = max(10, img.height // rng.randint(6, 10))
    d.text((img.width // 12, rng.choice([img.height // 20, img.height - size * 2])), rng.choice(captions),
           fill=(255, 255, 255), font=_font(size), stroke_width=2, stroke_fill=(0, 0, 0))
    return img


def meme(img, rng):
    """Meme captions: big outlined words across the top and the bottom, a fifth to a third of the picture."""
    img = img.copy()
    d = ImageDraw.Draw(img)
    words = ["ME", "WHEN", "THE", "MONDAY", "HITS", "NOBODY", "LITERALLY", "EVERYONE", "AGAIN", "WAIT", "FOR", "IT"]
    size = max(12, int(img.height * rng.uniform(0.1, 0.16)))
    for band in (0, 1):
        line = " ".join(rng.sample(words, rng.randint(2, 4)))
        y = int(img.height * 0.03) if band == 0 else img.height - int(size * 1.3)
        x = max(0, (img.width - int(d.textlength(line, font=_font(size)))) // 2)
        d.text((x, y), line, fill=(255, 255, 255), font=_font(size), stroke_width=max(2, size // 12), stroke_fill=(0, 0, 0))
    return img


def emoji(img, rng):
    """Overlaid stickers: hearts and stars in saturated colours."""
    img = img.copy()
    d = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 4)):
        r = int(min(img.size) * rng.uniform(0.08, 0.18))
        cx, cy = rng.randint(r, img.width - r), rng.randint(r, img.height - r)
        colour_ = rng.choice([(230, 30, 60), (250, 200, 0), (40, 160, 255)])
        if rng.random() < 0.5:  # heart: two circles and a triangle
            d.ellipse((cx - r, cy - r, cx, cy), fill=colour_)
            d.ellipse((cx, cy - r, cx + r, cy), fill=colour_)
            d.polygon([(cx - r, cy - r // 2), (cx + r, cy - r // 2), (cx, cy + r)], fill=colour_)
        else:  # five-point star
            pts = []
            for k in range(10):
                rad = r if k % 2 == 0 else r * 0.45
                ang = np.pi / 2 + k * np.pi / 5
                pts.append((cx + rad * np.cos(ang), cy - rad * np.sin(ang)))
            d.polygon(pts, fill=colour_)
    return img


def padding(img, rng):
    """Borders of 30-70% of each side (the photo keeps the rest), of any colour, the photo anywhere inside."""
    w, h = img.size
    share = rng.uniform(0.3, 0.7)
    canvas = Image.new("RGB", (int(w / (1 - share)), int(h / (1 - share * rng.uniform(0.6, 1.0)))),
                       tuple(rng.randint(0, 255) for _ in range(3)))
    canvas.paste(img, (rng.randint(0, canvas.width - w), rng.randint(0, canvas.height - h)))
    return canvas


def perspective(img, rng):
    w, h = img.size
    m = rng.uniform(0.1, 0.2)
    quad = (rng.uniform(0, m) * w, rng.uniform(0, m) * h, rng.uniform(0, m) * w, h - rng.uniform(0, m) * h,
            w - rng.uniform(0, m) * w, h - rng.uniform(0, m) * h, w - rng.uniform(0, m) * w, rng.uniform(0, m) * h)
    return img.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BICUBIC)


def _ui_text(d, x, y, width, size, ink, rng):
    """A line of made-up words, as an app or a web page shows them."""
    words = ["photo", "shared", "likes", "comments", "follow", "trip", "summer", "view", "all", "reply", "news", "today"]
    line, length = [], 0
    while length < width:
        word = rng.choice(words)
        line.append(word)
        length += d.textlength(word + " ", font=_font(size))
    d.text((x, y), " ".join(line[:-1]), fill=ink, font=_font(size))


def screenshot(img, rng):
    """The photo at 25-50% of the area of a phone app or browser screenshot, with the interface
    around it: bars, an avatar and names, buttons, text, a sidebar of thumbnails."""
    dark = rng.random() < 0.4
    paper, ink = ((18, 18, 18), (220, 220, 220)) if dark else ((255, 255, 255), (40, 40, 40))
    share = rng.uniform(0.25, 0.5)
    if rng.random() < 0.5:  # phone: portrait, the photo across most of the width
        photo_w = int(rng.uniform(0.8, 1.0) * 360)
        photo_h = int(photo_w * img.height / img.width)
        frame_w, frame_h = 360, max(int(photo_w * photo_h / share / 360), photo_h + 120)
    else:  # browser: landscape, the photo in the page's column
        frame_w = 800
        frame_h = int(frame_w * rng.uniform(0.55, 0.65))
        photo_h = int(min(frame_h - 90, (share * frame_w * frame_h * img.height / img.width) ** 0.5))
        photo_w = int(photo_h * img.width / img.height)
    frame = Image.new("RGB", (frame_w, frame_h), paper)
    d = ImageDraw.Draw(frame)
    bar = (34, 34, 34) if rng.random() < 0.5 else tuple(rng.randint(0, 255) for _ in range(3))
    d.rectangle((0, 0, frame_w, 28), fill=bar)
    d.text((10, 6), "9:41", fill=(250, 250, 250), font=_font(14))
    d.ellipse((8, 38, 40, 70), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    _ui_text(d, 50, 46, frame_w * 0.4, 14, ink, rng)
    left = rng.randint(0, max(0, frame_w - photo_w - 160)) if frame_w > 400 else (frame_w - photo_w) // 2
    top = 80
    frame.paste(img.resize((photo_w, photo_h), Image.Resampling.BILINEAR), (left, top))
    y = top + photo_h + 10
    for i in range(3):
        d.ellipse((10 + 34 * i, y, 34 + 34 * i, y + 24), outline=ink, width=2)
    y += 34
    while y < frame_h - 20:
        _ui_text(d, 10, y, frame_w * rng.uniform(0.5, 0.9) - 10, 13, ink, rng)
        y += 20
    if frame_w > 400:  # a sidebar of other pictures' thumbnails
        x = left + photo_w + 20
        for i in range(rng.randint(2, 4)):
            ty = 80 + i * 70
            if x + 120 < frame_w and ty + 60 < frame_h:
                d.rectangle((x, ty, x + 60, ty + 60), fill=tuple(rng.randint(0, 255) for _ in range(3)))
                _ui_text(d, x + 66, ty + 10, frame_w - x - 70, 12, ink, rng)
    return frame


def combo(img, rng):
    for fn in rng.sample([crop_strong, meme, emoji, colour, rotate, reencode, padding], 3):
        img = fn(img, rng)
    return img


FAMILIES = {
    "reencode": reencode, "resize": resize, "crop_mild": crop_mild, "flip": flip, "colour": colour,
    "blur": blur, "noise": noise,
    "text": text, "crop_strong": crop_strong, "rotate": rotate, "meme": meme, "emoji": emoji, "padding": padding,
    "perspective": perspective, "screenshot": screenshot, "combo": combo,
}
# A one-line caption covers under a tenth of the picture: a mild edit (the hash is unaffected by it).
# Meme captions across the top and bottom are the strong text overlay.
MILD = ("reencode", "resize", "crop_mild", "flip", "colour", "blur", "noise", "text")
STRONG = ("crop_strong", "rotate", "meme", "emoji", "padding", "perspective", "screenshot", "combo")


def reframed(img, rng, zoom: tuple[float, float], tilt: float, resample=Image.Resampling.BICUBIC):
    """A camera pointed a little differently: tilted by up to ``tilt`` degrees, zoomed in to a share
    of the width drawn from ``zoom``, at a random place."""
    w, h = img.size
    share = rng.uniform(*zoom)
    cw, ch = int(w * share), int(h * share)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.rotate(rng.uniform(-tilt, tilt), resample=resample).crop((x, y, x + cw, y + ch))


def reshoot(img, rng):
    """Another shot of the same scene, not a copy: the camera moved (new framing, zoom, a slight
    tilt), the subject moved (a smooth random displacement of 3-6% of the picture), and the exposure
    changed. The "similar" tier of bench/quality.py; scikit-image's stereo pair is the real case."""
    import torch
    import torch.nn.functional as F

    arr = np.asarray(reframed(img, rng, (0.75, 0.9), 3), np.float32)
    rows, cols = arr.shape[:2]
    amplitude = rng.uniform(0.03, 0.06) * max(rows, cols)
    coarse = torch.tensor(np.random.default_rng(rng.getrandbits(32)).normal(0, 1, (1, 2, 4, 4)), dtype=torch.float32)
    shift = F.interpolate(coarse, size=(rows, cols), mode="bicubic", align_corners=True)[0].numpy() * amplitude
    yy, xx = np.mgrid[0:rows, 0:cols]
    sy = np.clip(yy + shift[0], 0, rows - 1).astype(int)
    sx = np.clip(xx + shift[1], 0, cols - 1).astype(int)
    out = Image.fromarray(arr[sy, sx].astype(np.uint8))
    return ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))


def reshoot_parallax(img, rng):
    """Another shot from a camera moved sideways: near parts of the scene shift more than far ones
    (disparity from a smooth random depth map, up to 2-5% of the width), a slightly new framing and
    exposure. Closer to a copy than ``reshoot``: the hard case of the "similar" tier."""
    import torch
    import torch.nn.functional as F

    arr = np.asarray(img, np.float32)
    rows, cols = arr.shape[:2]
    g = np.random.default_rng(rng.getrandbits(32))
    coarse = torch.tensor(g.uniform(0, 1, (1, 1, 3, 3)), dtype=torch.float32)
    depth = F.interpolate(coarse, size=(rows, cols), mode="bicubic", align_corners=True)[0, 0].numpy().clip(0, 1)
    baseline = rng.uniform(0.02, 0.05) * cols
    yy, xx = np.mgrid[0:rows, 0:cols]
    sx = np.clip(xx + baseline * depth, 0, cols - 1).astype(int)
    out = Image.fromarray(arr[yy, sx].astype(np.uint8))
    m = rng.uniform(0.02, 0.06)
    out = out.crop((int(cols * m), int(rows * m / 2), cols - int(cols * m / 2), rows - int(rows * m)))
    return ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.15))
