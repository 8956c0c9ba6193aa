"""Patch embedding: a strided convolution that turns an image into a grid of patch tokens."""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """Split (B, C, H, W) into non-overlapping patches and project each to ``embed_dim``.

    H and W must be multiples of the patch size: silently dropping the border (as a bare
    convolution would) loses image evidence, so a mismatch is an error.
    """

    def __init__(self, patch_size: int = 14, in_chans: int = 3, embed_dim: int = 384) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"input size {h}x{w} is not a multiple of the patch size {p}")
        x = self.proj(x)  # (B, D, h/p, w/p)
        return x.flatten(2).transpose(1, 2)  # (B, N, D), row-major over the patch grid
