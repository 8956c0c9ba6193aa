"""Exponential moving average of the student's weights into the teacher."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher ← momentum · teacher + (1 − momentum) · student``, parameter by parameter."""
    t_params = dict(teacher.named_parameters())
    for name, s in student.named_parameters():
        t = t_params[name]
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
