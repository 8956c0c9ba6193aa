"""Local features of a picture, computed once at indexing and stored: what verification needs.

A picture's ORB keypoints (positions and 256-bit descriptors, found on its grey levels at
``verification.VERIFY_SIDE`` pixels, as verification finds them; a framed picture's partly on the
photo inside it) and those grey levels as a JPEG, for the photometric check. Stored in the catalog
(``image_features``), so duplicate scans and checks verify candidates without reading a file.
Encoded as one byte string:

    b"DSLF2" | width, height, keypoints: uint16 x 3 | content window x0, y0, x1, y1: uint16 x 4
    in pixels (all 0: not framed) | positions: uint16 (n, 2) in 1/16 pixel |
    descriptors: uint8 (n, 32) | grey levels: JPEG

(b"DSLF1", the first format, has no window.)

About 36 bytes a keypoint (400 at most) and the grey levels: 21.6 kB a picture on average (photos-1k).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from indexer.framing import Window, content_windows, crop_windows
from indexer.verification import KEYPOINTS, Keypoints, grey_levels, orb_keypoints

MAGIC = b"DSLF2"
FIRST_MAGIC = b"DSLF1"  # without the window
# what ``extract`` finds, by version (kept beside the stored bytes): 1, whole-picture keypoints only;
# 2, a framed picture's partly on its window; 3, windows that leave out text blocks, and kept
# with the keypoints. Features of an older version are found again by the next index of their
# collection (docs/INDEXING.md).
EXTRACTOR = 3
HEADER = struct.Struct("<HHH")
WINDOW = struct.Struct("<HHHH")
SUBPIXELS = 16  # positions are kept to 1/16 pixel: far below RANSAC's 2-pixel residual
WINDOW_KEYPOINTS = 140  # of KEYPOINTS, found on a framed picture's content window (docs/BENCHMARKS.md)
MAX_WINDOW_AREA = 0.6  # share of the picture: a window larger than this is not a framed photo's
FRAMED_OUTLINE = 0.4  # share of the outline a frame keeps flat at least (``flat_outline``)
OUTLINE_BAND = 5  # pixels (at VERIFY_SIDE) inside the outline that a flat frame keeps flat
# grey levels: a border, a page or an app's bar is flat to about one; a photo's smooth sky or wall
# varies more (noise, gradients): at 1.0, 80% of photos-1k's pictures are not looked at further
# and no padded or screenshotted copy is missed (docs/BENCHMARKS.md)
OUTLINE_STD = 1.0
GREY_QUALITY = 50  # JPEG quality of the stored grey levels: the check compares them blurred (docs/BENCHMARKS.md)


class FeaturesError(ValueError):
    """Bytes that are not stored local features (truncated, another format)."""


@dataclass(frozen=True)
class Prepared:
    """What ``detect`` needs of a picture, a few hundred kB at most however large the picture:
    its grey levels at VERIFY_SIDE and, for a framed picture, its content window and that
    window's grey levels (cut from the full picture, so at the photo's own scale)."""

    grey: np.ndarray
    window: Window | None = None
    window_grey: np.ndarray | None = None


def extract(picture: Image.Image, windows: list[Window] | None = None) -> Keypoints:
    """The picture's keypoints as verification computes them, on its grey levels at VERIFY_SIDE. A
    framed picture (``framed_window``) gets WINDOW_KEYPOINTS of them from the photo inside,
    found on that window at VERIFY_SIDE: at the photo's own scale, where the frame's text and
    buttons would otherwise take most of them and its copies match few. ``windows``: the picture's
    content windows, when the caller already found them."""
    return detect(prepare(picture, windows))


def prepare(picture: Image.Image, windows: list[Window] | None = None) -> Prepared:
    """The first half of ``extract``, the half that needs the picture itself."""
    grey = grey_levels(picture)
    window = framed_window(picture, grey, windows)
    if window is None:
        return Prepared(grey)
    return Prepared(grey, window, grey_levels(crop_windows(picture, [window])[0]))


def detect(prepared: Prepared) -> Keypoints:
    """The second half of ``extract``: the ORB keypoints of the prepared grey levels."""
    grey = prepared.grey
    if prepared.window is None:
        return orb_keypoints(grey, cv2.ORB_create(nfeatures=KEYPOINTS))
    whole = orb_keypoints(grey, cv2.ORB_create(nfeatures=KEYPOINTS - WINDOW_KEYPOINTS))
    inner = orb_keypoints(prepared.window_grey, cv2.ORB_create(nfeatures=WINDOW_KEYPOINTS))
    x0, y0, x1, y1 = prepared.window
    height, width = grey.shape
    scale = np.array([(x1 - x0) * width / inner.width, (y1 - y0) * height / inner.height], dtype=np.float32)
    placed = inner.points * scale + np.array([x0 * width, y0 * height], dtype=np.float32)
    return Keypoints(np.vstack([whole.points, placed]).astype(np.float32),
                     np.vstack([whole.descriptors, inner.descriptors]), width, height, grey,
                     window=_as_shares(_in_pixels(prepared.window, width, height), width, height))  # as stored


def flat_outline(grey: np.ndarray) -> float:
    """The share of the picture's outline that is flat (grey levels varying by at most OUTLINE_STD
    across the OUTLINE_BAND pixels inside it): a frame runs along much of it, a photo's own edges
    seldom do; the cheap test before looking for a frame (a tenth of ``framed_window``'s cost)."""
    bands = [grey[:OUTLINE_BAND], grey[-OUTLINE_BAND:], grey[:, :OUTLINE_BAND].T, grey[:, -OUTLINE_BAND:].T]
    if min(grey.shape) < 2 * OUTLINE_BAND:
        return 0.0
    flat = [band.astype(np.float32).std(axis=0) <= OUTLINE_STD for band in bands]
    return float(np.concatenate(flat).mean())


def framed_window(picture: Image.Image, grey: np.ndarray | None = None,
                  windows: list[Window] | None = None) -> Window | None:
    """The largest content window of a picture in a frame: looked for only where its outline is
    flat enough for a frame, and kept if it covers at most MAX_WINDOW_AREA of it: a larger one is
    most of a plain photo, whose flat edge looked like a border, and its own keypoints already
    cover it. ``grey`` (its grey levels at VERIFY_SIDE) and ``windows`` (its content windows,
    framing.content_windows) are what the caller already found of the picture."""
    if flat_outline(grey_levels(picture) if grey is None else grey) < FRAMED_OUTLINE:
        return None
    small = [w for w in (content_windows(picture) if windows is None else windows)
             if (w[2] - w[0]) * (w[3] - w[1]) <= MAX_WINDOW_AREA]
    return small[0] if small else None


def encode(points: Keypoints) -> bytes:
    """The keypoints and their grey levels as stored bytes."""
    if points.grey is None:
        raise FeaturesError("keypoints without their grey levels cannot be stored")
    n = len(points.points)
    fixed = np.clip(np.round(points.points * SUBPIXELS), 0, np.iinfo(np.uint16).max).astype("<u2")
    ok, grey = cv2.imencode(".jpg", points.grey, [cv2.IMWRITE_JPEG_QUALITY, GREY_QUALITY])
    if not ok:
        raise FeaturesError("the grey levels could not be encoded")
    window = (0, 0, 0, 0) if points.window is None else _in_pixels(points.window, points.width, points.height)
    return (MAGIC + HEADER.pack(points.width, points.height, n) + WINDOW.pack(*window) + fixed.tobytes()
            + np.ascontiguousarray(points.descriptors, dtype=np.uint8).tobytes() + grey.tobytes())


def decode(data: bytes) -> Keypoints:
    """Stored bytes back to keypoints, with their grey levels (and content window, if any)."""
    first = data.startswith(FIRST_MAGIC)
    header = len(MAGIC) + HEADER.size + (0 if first else WINDOW.size)
    if not (first or data.startswith(MAGIC)) or len(data) < header:
        raise FeaturesError("not stored local features (no dinoseek header)")
    width, height, n = HEADER.unpack_from(data, len(MAGIC))
    window = None if first else WINDOW.unpack_from(data, len(MAGIC) + HEADER.size)
    start = header
    points_end = start + 4 * n
    descriptors_end = points_end + 32 * n
    if len(data) <= descriptors_end:
        raise FeaturesError(f"stored local features are truncated ({len(data)} bytes for {n} keypoints)")
    points = np.frombuffer(data, dtype="<u2", count=2 * n, offset=start).reshape(n, 2).astype(np.float32) / SUBPIXELS
    descriptors = np.frombuffer(data, dtype=np.uint8, count=32 * n, offset=points_end).reshape(n, 32).copy()
    grey = data[descriptors_end:]
    if not (grey.startswith(b"\xff\xd8") and grey.endswith(b"\xff\xd9")):
        raise FeaturesError("the stored grey levels are not a whole JPEG")
    return Keypoints(points, descriptors, width, height, grey_jpeg=grey,  # decoded when first needed
                     window=_as_shares(window, width, height) if window and any(window) else None)


def _in_pixels(window: Window, width: int, height: int) -> tuple[int, int, int, int]:
    """A window in whole pixels of a picture ``width`` x ``height``, as stored."""
    x0, y0, x1, y1 = window
    return round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height)


def _as_shares(pixels: tuple[int, int, int, int], width: int, height: int) -> Window:
    """A stored window as shares of the picture's sides, as Keypoints keep it."""
    x0, y0, x1, y1 = pixels
    return x0 / width, y0 / height, x1 / width, y1 / height
