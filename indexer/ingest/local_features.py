"""Local features of a picture, computed once at indexing and stored: what verification needs.

A picture's ORB keypoints (positions and 256-bit descriptors, found on its grey levels at
``verification.VERIFY_SIDE`` pixels, as verification finds them) and those grey levels as a
JPEG, for the photometric check. Stored in the catalog (``image_features``), so duplicate scans
and checks verify candidates without reading a file. Encoded as one byte string:

    b"DSLF1" | width, height, keypoints: uint16 x 3 | positions: uint16 (n, 2) in 1/16 pixel |
    descriptors: uint8 (n, 32) | grey levels: JPEG

About 36 bytes a keypoint (400 at most) and the grey levels: 21.6 kB a picture on average (photos-1k).
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
from PIL import Image

from indexer.verification import KEYPOINTS, Keypoints, grey_levels, orb_keypoints

MAGIC = b"DSLF1"
HEADER = struct.Struct("<HHH")
SUBPIXELS = 16  # positions are kept to 1/16 pixel: far below RANSAC's 2-pixel residual
GREY_QUALITY = 50  # JPEG quality of the stored grey levels: the check compares them blurred (docs/BENCHMARKS.md)


class FeaturesError(ValueError):
    """Bytes that are not stored local features (truncated, another format)."""


def extract(picture: Image.Image) -> Keypoints:
    """The picture's keypoints as verification computes them, on its grey levels at VERIFY_SIDE."""
    return orb_keypoints(grey_levels(picture), cv2.ORB_create(nfeatures=KEYPOINTS))


def encode(points: Keypoints) -> bytes:
    """The keypoints and their grey levels as stored bytes."""
    if points.grey is None:
        raise FeaturesError("keypoints without their grey levels cannot be stored")
    n = len(points.points)
    fixed = np.clip(np.round(points.points * SUBPIXELS), 0, np.iinfo(np.uint16).max).astype("<u2")
    ok, grey = cv2.imencode(".jpg", points.grey, [cv2.IMWRITE_JPEG_QUALITY, GREY_QUALITY])
    if not ok:
        raise FeaturesError("the grey levels could not be encoded")
    return (MAGIC + HEADER.pack(points.width, points.height, n) + fixed.tobytes()
            + np.ascontiguousarray(points.descriptors, dtype=np.uint8).tobytes() + grey.tobytes())


def decode(data: bytes) -> Keypoints:
    """Stored bytes back to keypoints, with their grey levels."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + HEADER.size:
        raise FeaturesError("not stored local features (no dinoseek header)")
    width, height, n = HEADER.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + HEADER.size
    points_end = start + 4 * n
    descriptors_end = points_end + 32 * n
    if len(data) <= descriptors_end:
        raise FeaturesError(f"stored local features are truncated ({len(data)} bytes for {n} keypoints)")
    points = np.frombuffer(data, dtype="<u2", count=2 * n, offset=start).reshape(n, 2).astype(np.float32) / SUBPIXELS
    descriptors = np.frombuffer(data, dtype=np.uint8, count=32 * n, offset=points_end).reshape(n, 32).copy()
    grey = data[descriptors_end:]
    if not (grey.startswith(b"\xff\xd8") and grey.endswith(b"\xff\xd9")):
        raise FeaturesError("the stored grey levels are not a whole JPEG")
    return Keypoints(points, descriptors, width, height, grey_jpeg=grey)  # decoded when first needed
