"""iBOT's masked-patch loss: the student predicts, for masked patches, the teacher's targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class IBOTPatchLoss(nn.Module):
    """Cross-entropy on masked patches, averaged within each image, then over images."""

    def __init__(self, student_temp: float = 0.1) -> None:
        super().__init__()
        self.student_temp = student_temp

    def forward(self, student_logits: torch.Tensor, teacher_targets: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``student_logits`` / ``teacher_targets``: (M, K) for the M masked patches in ``masks`` (B, N) order."""
        per_patch = (teacher_targets * F.log_softmax(student_logits.float() / self.student_temp, dim=-1)).sum(-1)
        per_image = masks.sum(dim=-1).clamp(min=1).float()
        weights = (1.0 / per_image).unsqueeze(-1).expand_as(masks)[masks]
        return -(per_patch * weights).sum() / masks.shape[0]
