"""Stochastic depth: drop a whole residual branch per sample during training."""

from __future__ import annotations

import torch
from torch import nn

from model.layers.packing import PackedSequences


class DropPath(nn.Module):
    """Zero the branch for a random subset of samples and rescale the rest (identity in eval)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor, packed: PackedSequences | None = None) -> torch.Tensor:
        """``packed``: ``x`` is (1, T, D) holding several images; each is kept or dropped whole."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        if packed is not None:
            per_image = x.new_empty(len(packed.seqlens)).bernoulli_(keep)
            return x * packed.per_token(per_image).view(1, -1, 1) / keep
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep
