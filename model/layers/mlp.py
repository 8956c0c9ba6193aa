"""The standard transformer feed-forward network: Linear → GELU → Linear."""

from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """Two-layer MLP with GELU (exact erf form, as in DINOv2)."""

    def __init__(self, in_features: int, hidden_features: int, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
