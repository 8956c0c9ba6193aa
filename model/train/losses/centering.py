"""Centering of teacher outputs: Sinkhorn-Knopp (DINOv2's default) or an EMA softmax center (DINO)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temperature: float, iterations: int = 3) -> torch.Tensor:
    """Teacher targets (B, K) whose rows are distributions and whose prototype marginals are uniform.

    Alternately normalises the rows (prototypes) and columns (samples) of exp(logits / T): after the
    last step every sample's row sums to 1 and, as the iterations converge, every prototype
    receives mass B / K, which is what prevents collapse onto a few prototypes.
    """
    q = torch.exp((logits.float() - logits.float().max()) / temperature).t()  # (K, B); max shift for stability
    k, b = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    return (q * b).t()


class SoftmaxCenter(nn.Module):
    """DINO's centering: subtract an EMA of the teacher's mean logits, then sharpen with softmax."""

    def __init__(self, out_dim: int, momentum: float = 0.9) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    @torch.no_grad()
    def forward(self, logits: torch.Tensor, temperature: float) -> torch.Tensor:
        targets = F.softmax((logits.float() - self.center) / temperature, dim=-1)
        self.center.mul_(self.momentum).add_(logits.float().mean(dim=0, keepdim=True), alpha=1 - self.momentum)
        return targets
