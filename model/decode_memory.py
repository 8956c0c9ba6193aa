"""Decode memory: what decoding a picture will take, known before its pixels are loaded, and a
per-process budget that decodes draw from, so a file that passes the pixel cap (a 10000 x 10000
16-bit PNG is ~200 kB) cannot take gigabytes, nor can many large ones at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

MB = 1024 * 1024
# bytes a pixel of each mode takes in Pillow's memory (RGB and other 3-band modes are stored in 4)
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_NUMERIC = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}  # converted through one numpy copy of their values


class DecodeTooLarge(ValueError):
    """A picture would take more memory to decode than the whole budget."""


def decode_footprint(img: Image.Image) -> int:
    """Bytes that decoding ``img`` (opened, not loaded; after any draft) to oriented RGB may hold
    at once: its pixels, a copy for the orientation, the RGB result and, for 16-bit and float
    modes, two numpy copies of their values (as read, and clipped) and their 8-bit form."""
    pixels = img.width * img.height
    own = _PIXEL_BYTES.get(img.mode, 4)
    numeric = 2 * own + 1 if img.mode in _NUMERIC else 0
    return pixels * (2 * own + 4 + numeric)


class DecodeBudget:
    """Bytes of decode memory shared by this process's decodes: a decode waits until its
    footprint fits beside those running; one larger than the whole budget is refused at once."""

    def __init__(self, total_bytes: int) -> None:
        self.total = total_bytes
        self.used = 0
        self._changed = threading.Condition()

    def resize(self, total_bytes: int) -> None:
        with self._changed:
            self.total = total_bytes
            self._changed.notify_all()

    @contextmanager
    def reserve(self, footprint: int) -> Iterator[None]:
        if footprint > self.total:
            raise DecodeTooLarge(f"decoding it takes about {footprint / MB:,.0f} MB, over the decode memory budget of "
                                 f"{self.total / MB:,.0f} MB (DINOSEEK_DECODE_MEMORY_MB)")
        with self._changed:
            self._changed.wait_for(lambda: self.used + footprint <= self.total)
            self.used += footprint
        try:
            yield
        finally:
            with self._changed:
                self.used -= footprint
                self._changed.notify_all()
