"""Compact patch-token storage: grids pooled to at most 8 x 8 cells, L2-normalised, kept in float16.

A ViT-S/14 grid at 224 px is 16 x 16 x 384 float32 (393 kB); pooled to 8 x 8 and stored as
float16 it is 48 kB per image (24.6 kB for ViT-Ti/14), enough to say roughly where a region
matched. Each cell gets the id ``image_id * PATCH_SLOTS + row * PATCH_GRID + col``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PATCH_GRID = 8
PATCH_SLOTS = PATCH_GRID * PATCH_GRID


def pooled_shape(rows: int, cols: int, long_side: int = PATCH_GRID) -> tuple[int, int]:
    """The pooled grid keeps the aspect ratio and fits in ``long_side`` cells (never upsampled)."""
    scale = min(1.0, long_side / max(rows, cols))
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def pool_grid(grid: np.ndarray, long_side: int = PATCH_GRID) -> np.ndarray:
    """(h, w, D) patch tokens → (h', w', D) average-pooled, L2-normalised float32 cells, at most
    ``long_side`` on the long side (the stored grids; region queries pool coarser)."""
    h, w, _ = grid.shape
    out_h, out_w = pooled_shape(h, w, long_side)
    tokens = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32)).permute(2, 0, 1)[None]
    pooled = F.adaptive_avg_pool2d(tokens, (out_h, out_w))[0].permute(1, 2, 0)
    return F.normalize(pooled, dim=-1).numpy()


def patch_ids(image_id: int, rows: int, cols: int) -> np.ndarray:
    """Store ids of an image's pooled cells, row-major."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return (image_id * PATCH_SLOTS + r * PATCH_GRID + c).reshape(-1).astype(np.int64)


def all_patch_ids(image_ids: np.ndarray | list[int]) -> np.ndarray:
    """Every slot an image's cells may occupy (for deleting a grid whatever its shape was)."""
    base = np.asarray(image_ids, dtype=np.int64)[:, None] * PATCH_SLOTS
    return (base + np.arange(PATCH_SLOTS, dtype=np.int64)[None, :]).reshape(-1)


def image_of_patch(ids: np.ndarray) -> np.ndarray:
    """The image id each cell id belongs to."""
    return np.asarray(ids, dtype=np.int64) // PATCH_SLOTS
