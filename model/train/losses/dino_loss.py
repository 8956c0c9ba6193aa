"""DINO's image-level self-distillation loss: cross-entropy from teacher targets to student views."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DINOLoss(nn.Module):
    """Sum over (student view, teacher view) pairs of the mean cross-entropy H(t, softmax(s / τ_s))."""

    def __init__(self, student_temp: float = 0.1) -> None:
        super().__init__()
        self.student_temp = student_temp

    def forward(self, student_logits: Sequence[torch.Tensor], teacher_targets: Sequence[torch.Tensor]) -> torch.Tensor:
        total = student_logits[0].new_zeros(())
        for s in student_logits:
            log_p = F.log_softmax(s.float() / self.student_temp, dim=-1)
            for t in teacher_targets:
                total = total - (t * log_p).sum(dim=-1).mean()
        return total
