"""64-bit perceptual hash (pHash): the signs of a picture's lowest DCT frequencies.

The same bits as ``imagehash.phash`` (grey, 32 x 32 Lanczos, 2-D DCT-II, the top-left 8 x 8
coefficients against their median), computed with NumPy so the product needs neither imagehash
nor SciPy at run time. It survives re-encoding, resizing, mild colour changes and small captions,
where small learned descriptors are weakest, and fails on crops and strong overlays.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_BITS = 64
_SIDE = 32  # the picture is reduced to 32 x 32 grey levels
_LOW = 8  # and the 8 x 8 lowest frequencies kept


def _dct_matrix(n: int) -> np.ndarray:
    """Unscaled DCT-II as a matrix (rows: frequencies); scale does not change the median's signs."""
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * x + 1) / (2 * n))


_DCT = _dct_matrix(_SIDE)


def perceptual_hash(picture: Image.Image) -> int:
    """The picture's 64-bit pHash as a signed integer (bit 63 first, row-major), fit for a BIGINT column."""
    grey = np.asarray(picture.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T)[:_LOW, :_LOW]
    bits = (low > np.median(low)).reshape(-1)
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value - (1 << 64) if value >= 1 << 63 else value


def hash_similarity(a: int, b: int) -> float:
    """1 - Hamming distance / 64: 1.0 for equal hashes, about 0.5 for unrelated pictures."""
    return 1.0 - bin((a ^ b) & ((1 << 64) - 1)).count("1") / HASH_BITS
