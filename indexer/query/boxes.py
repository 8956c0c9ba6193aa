"""Boxes of a picture (x0, y0, x1, y1 in its pixels, as displayed): parsed from requests, checked against the picture."""

from __future__ import annotations

import math

from indexer.errors import InvalidRequest, InvalidValue

MIN_BOX_PIXELS = 8


def parse_box(value: object) -> list[int]:
    """A box from ``"x0,y0,x1,y1"`` or a sequence of four finite numbers, rounded to pixels;
    anything else is ``InvalidValue`` naming what was sent."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        numbers = [float(v) for v in parts]  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"box must be four finite numbers x0,y0,x1,y1 in pixels, got {value!r}") from exc
    if not all(math.isfinite(v) for v in numbers):
        raise InvalidValue(f"box must be four finite numbers x0,y0,x1,y1 in pixels, got {value!r}")
    if len(numbers) != 4:
        raise InvalidValue(f"box must be four numbers x0,y0,x1,y1 in pixels, got {value!r}")
    return [int(round(v)) for v in numbers]


def check_box(box: list[int], width: int, height: int) -> list[int]:
    """The box clipped to the picture; a box outside it or too small is a bad request."""
    if len(box) != 4:
        raise InvalidRequest(f"box must be [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise InvalidRequest(f"box must have x1 > x0 and y1 > y0, got {box!r}")
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if cx1 - cx0 < MIN_BOX_PIXELS or cy1 - cy0 < MIN_BOX_PIXELS:
        raise InvalidRequest(f"box {box!r} covers less than {MIN_BOX_PIXELS}x{MIN_BOX_PIXELS} pixels of the "
                             f"{width}x{height} picture")
    return [cx0, cy0, cx1, cy1]
