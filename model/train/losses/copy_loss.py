"""Copy-detection objective (SSCD-style): InfoNCE between edited views plus an entropy regulariser."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.train.losses.koleo_loss import KoLeoLoss


class CopyDetectionLoss(nn.Module):
    """InfoNCE over 2 views per image (each view's positive is the other view of the same image,
    every other view in the batch is a negative) + ``entropy_weight`` × KoLeo on the descriptors,
    the differential-entropy regulariser that spreads descriptors so one threshold separates copies.
    """

    def __init__(self, temperature: float = 0.05, entropy_weight: float = 30.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.entropy_weight = entropy_weight
        self.koleo = KoLeoLoss()

    def forward(self, descriptors: torch.Tensor, image_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """``descriptors`` (V, D), any scale; ``image_ids`` (V,) says which views show the same image."""
        x = F.normalize(descriptors.float(), dim=-1)
        sims = x @ x.t() / self.temperature
        self_mask = torch.eye(len(x), dtype=torch.bool, device=x.device)
        sims = sims.masked_fill(self_mask, float("-inf"))
        positives = (image_ids[:, None] == image_ids[None, :]) & ~self_mask
        if not positives.any(dim=1).all():
            raise ValueError("every view needs at least one other view of the same image in the batch")
        log_prob = sims - torch.logsumexp(sims, dim=1, keepdim=True)
        infonce = -(log_prob.masked_fill(~positives, 0.0).sum(1) / positives.sum(1)).mean()
        entropy = self.koleo(x)
        return {"infonce": infonce, "entropy": entropy, "loss": infonce + self.entropy_weight * entropy}
