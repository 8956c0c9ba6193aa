"""Blockwise masks for iBOT: rectangles of patches, mask ratios spread across a batch."""

from __future__ import annotations

import math
import random

import torch


class BlockMaskGenerator:
    """Masks of about ``num_masked`` patches on an (h, w) grid made of random rectangles.

    Each rectangle covers between ``min_block`` and the remaining budget of patches, with an
    aspect ratio drawn log-uniformly from [``min_aspect``, 1 / ``min_aspect``].
    """

    def __init__(self, grid: tuple[int, int], min_block: int = 4, max_block: int | None = None,
                 min_aspect: float = 0.3) -> None:
        self.height, self.width = grid
        self.min_block = min_block
        self.max_block = max_block or self.height * self.width // 2
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))

    def _add_block(self, mask: torch.Tensor, budget: int, rng: random.Random) -> int:
        for _ in range(10):
            area = rng.uniform(self.min_block, max(self.min_block, budget))
            aspect = math.exp(rng.uniform(*self.log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if 0 < h < self.height and 0 < w < self.width:
                top, left = rng.randint(0, self.height - h), rng.randint(0, self.width - w)
                region = mask[top : top + h, left : left + w]
                new = int(h * w - region.sum())
                if 0 < new <= budget:
                    region.fill_(True)
                    return new
        return 0

    def __call__(self, num_masked: int, rng: random.Random) -> torch.Tensor:
        mask = torch.zeros(self.height, self.width, dtype=torch.bool)
        count = 0
        while count < num_masked:
            added = self._add_block(mask, min(num_masked - count, self.max_block), rng)
            if added == 0:
                break
            count += added
        return mask


def batch_masks(batch_size: int, grid: tuple[int, int], ratio_range: tuple[float, float], masked_share: float,
                rng: random.Random) -> torch.Tensor:
    """(batch_size, h*w) masks: a ``masked_share`` of the images get masks whose ratios are spread
    evenly over ``ratio_range`` (stratified, as in DINOv2); the others get none. Order shuffled."""
    n = grid[0] * grid[1]
    generator = BlockMaskGenerator(grid)
    n_masked = int(batch_size * masked_share)
    lo, hi = ratio_range
    bounds = torch.linspace(lo, hi, n_masked + 1).tolist()
    masks = [generator(int(n * rng.uniform(bounds[i], bounds[i + 1])), rng).flatten() for i in range(n_masked)]
    masks += [torch.zeros(n, dtype=torch.bool) for _ in range(batch_size - n_masked)]
    rng.shuffle(masks)
    return torch.stack(masks)
