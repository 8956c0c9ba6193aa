"""KoLeo regulariser: spreads features by pushing each away from its nearest neighbour in the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoLeoLoss(nn.Module):
    """``-mean(log(distance to nearest other sample))`` on L2-normalised features (Kozachenko-Leonenko)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.normalize(features.float(), dim=-1, eps=self.eps)
        with torch.no_grad():
            sims = x @ x.t()
            sims.fill_diagonal_(-2.0)
            nearest = sims.argmax(dim=1)
        distances = (x - x[nearest] + self.eps).norm(dim=-1)
        return -torch.log(distances + self.eps).mean()
