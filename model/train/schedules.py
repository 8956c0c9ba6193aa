"""Per-step schedules: cosine with linear warm-up, and a linear warm-up to a constant."""

from __future__ import annotations

import math


def cosine_schedule(step: int, total_steps: int, start: float, end: float, warmup_steps: int = 0,
                    warmup_start: float = 0.0) -> float:
    """Linear from ``warmup_start`` to ``start`` over ``warmup_steps``, then cosine to ``end``."""
    if step < warmup_steps:
        return warmup_start + (start - warmup_start) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress))


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """Linear from ``start`` to ``end`` over ``warmup_steps``, then ``end`` (teacher temperature)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * step / warmup_steps
