"""Where a picture may hold another one: its content windows.

A framed copy (a photo padded with borders, inside a phone or browser screenshot, captioned, in a
collage) has a descriptor far from its source's, and most of its keypoints on the frame: the frame
dominates both. A query's source is found by searching its content windows as queries of their own
(query/search.py); an indexed picture keeps keypoints of its largest window, found at the scale
of the photo inside (ingest/local_features.py). A content rectangle is a
connected region of pixels that are not the frame's background: the background is the few colours
of the large flat areas that reach the picture's outline (borders, page, bars), with the blocks
of text on them, so the photo inside stands out as one large component; thin lines left are dropped.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

WORK_SIDE = 256  # long side, in pixels, the frame is analysed at
BACKGROUND_COLOURS = 3  # the most frequent quantised colours of flat areas taken as background
COLOUR_STEP = 16  # grey-level step of the colour quantisation
FLAT_STD = 4.0  # a pixel in a 5 x 5 neighbourhood of at most this grey-level deviation is flat
MIN_FLAT_SHARE = 0.04  # a flat colour covering less of the picture is not a background
MIN_WINDOW_SIDE = 0.2  # a content rectangle spans at least this share of both sides of the picture
MIN_WINDOW_AREA = 0.06  # and this share of its area
MAX_WINDOW_AREA = 0.9  # a rectangle nearly the whole picture adds nothing to the picture itself
MAX_WINDOWS = 4
SOLID_SHARE = 0.6  # rows or columns a component fills less than this share of its fullest one are trimmed
OPENING = 15  # pixels (at WORK_SIDE): content thinner than this is text or lines, not a picture
# a block of text: pixels whose TEXT_NEIGHBOURHOOD (at WORK_SIDE) is at least TEXT_DENSITY of a
# background colour (within PAGE_TOLERANCE grey levels a channel) are the page, not content
TEXT_NEIGHBOURHOOD = 9
TEXT_DENSITY = 0.5
PAGE_TOLERANCE = 8


Window = tuple[float, float, float, float]  # x0, y0, x1, y1 as shares of the picture's width and height


def content_windows(picture: Image.Image) -> list[Window]:
    """Up to MAX_WINDOWS boxes, largest first, of the regions of the picture that stand out from a
    frame around them (as shares of its sides, so they apply to any decode of it); none for a
    picture that is all content (a photo as it is)."""
    scale = min(1.0, WORK_SIDE / max(picture.size))
    small = picture.convert("RGB")
    if scale < 1.0:
        small = small.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                             Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.uint8)
    height, width = rgb.shape[:2]
    if min(height, width) < 16:
        return []
    background = _background_mask(rgb)
    if not background.any():
        return []
    content = (~background).astype(np.uint8)
    # text and thin interface lines are opened away, then a photo's own small flat patches closed
    content = cv2.morphologyEx(content, cv2.MORPH_OPEN, np.ones((OPENING, OPENING), np.uint8))
    content = cv2.morphologyEx(content, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(content, connectivity=8)
    boxes = []
    for label in range(1, count):
        x, y, w, h, _ = stats[label]
        if w < MIN_WINDOW_SIDE * width or h < MIN_WINDOW_SIDE * height:
            continue
        x, y, w, h = _solid_part(labels[y:y + h, x:x + w] == label, x, y)
        area = (w * h) / (width * height)
        if (w >= MIN_WINDOW_SIDE * width and h >= MIN_WINDOW_SIDE * height
                and MIN_WINDOW_AREA <= area <= MAX_WINDOW_AREA):
            boxes.append((w * h, (x, y, x + w, y + h)))
    boxes.sort(key=lambda b: -b[0])
    return [(x0 / width, y0 / height, x1 / width, y1 / height) for _, (x0, y0, x1, y1) in boxes[:MAX_WINDOWS]]


def crop_windows(picture: Image.Image, windows: list[Window]) -> list[Image.Image]:
    """The picture's content in each window."""
    return [picture.crop((round(x0 * picture.width), round(y0 * picture.height),
                          max(round(x0 * picture.width) + 1, round(x1 * picture.width)),
                          max(round(y0 * picture.height) + 1, round(y1 * picture.height))))
            for x0, y0, x1, y1 in windows]


def _solid_part(component: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    """The rows and columns of a component's box that it fills at least half as much as its
    fullest ones (x, y, w, h): a photo without the text lines and buttons that touch it."""
    rows, cols = component.mean(axis=1), component.mean(axis=0)
    keep_rows = np.flatnonzero(rows >= SOLID_SHARE * rows.max())
    keep_cols = np.flatnonzero(cols >= SOLID_SHARE * cols.max())
    return (x + int(keep_cols[0]), y + int(keep_rows[0]), int(keep_cols[-1] - keep_cols[0] + 1),
            int(keep_rows[-1] - keep_rows[0] + 1))


def _background_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the frame's background: for each of the most frequent colours of flat pixels
    (covering at least MIN_FLAT_SHARE of the picture), its flat pixels and the pixels mostly of
    it around (TEXT_DENSITY within TEXT_NEIGHBOURHOOD: lines of text on a page, whose gaps are too
    narrow to be flat), where they reach the picture's outline through that colour."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mean = cv2.blur(grey, (5, 5))
    deviation = np.sqrt(np.maximum(cv2.blur(grey * grey, (5, 5)) - mean * mean, 0.0))
    flat = deviation <= FLAT_STD
    quantised = (rgb // COLOUR_STEP).astype(np.int32)
    codes = (quantised[..., 0] * 256 + quantised[..., 1]) * 256 + quantised[..., 2]
    flat_codes = codes[flat]
    background = np.zeros(grey.shape, dtype=bool)
    if not len(flat_codes):
        return background
    values, counts = np.unique(flat_codes, return_counts=True)
    order = np.argsort(-counts)[:BACKGROUND_COLOURS]
    for code in values[order][counts[order] >= MIN_FLAT_SHARE * grey.size]:
        flat_of_it = flat & (codes == code)
        colour = np.array(cv2.mean(rgb, mask=flat_of_it.astype(np.uint8))[:3])
        of_it = cv2.inRange(rgb, np.clip(colour - PAGE_TOLERANCE, 0, 255), np.clip(colour + PAGE_TOLERANCE, 0, 255))
        dense = cv2.blur(of_it, (TEXT_NEIGHBOURHOOD, TEXT_NEIGHBOURHOOD)) >= TEXT_DENSITY * 255
        # each colour reaches the outline through itself: a photo's dark corner beside a coloured
        # border is not joined to the frame by the border
        count, labels = cv2.connectedComponents((flat_of_it | dense).astype(np.uint8), connectivity=4)
        outline = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        background |= np.isin(labels, outline[outline > 0])
    return background
