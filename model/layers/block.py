"""One pre-norm transformer block: attention and feed-forward residual branches with LayerScale."""

from __future__ import annotations

import torch
from torch import nn

from model.layers.attention import Attention
from model.layers.drop_path import DropPath
from model.layers.layer_scale import LayerScale
from model.layers.packing import PackedSequences


class Block(nn.Module):
    """``x + ls1(attn(norm1(x)))`` then ``x + ls2(mlp(norm2(x)))``, with optional stochastic depth."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn: nn.Module,
        layerscale_init: float | None = 1e-5,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim, layerscale_init) if layerscale_init is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = ffn
        self.ls2 = LayerScale(dim, layerscale_init) if layerscale_init is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, packed: PackedSequences | None = None) -> torch.Tensor:
        """``packed``: ``x`` is (1, T, D) holding several images' sequences (see ``layers.packing``)."""
        x = x + self._drop(self.ls1(self.attn(self.norm1(x), packed)), packed)
        return x + self._drop(self.ls2(self.mlp(self.norm2(x))), packed)

    def _drop(self, branch: torch.Tensor, packed: PackedSequences | None) -> torch.Tensor:
        if isinstance(self.drop_path, DropPath):
            return self.drop_path(branch, packed)
        return branch
