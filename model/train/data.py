"""Training data: a recursive image folder, a deterministic sample order, and the batch collation.

Sample ``k`` of a run (counting from its first step) always sees the same image and the same
random augmentation, so ``--resume`` continues exactly where a run stopped.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from model.files import iter_image_paths
from model.preprocess import ImageDecodeError, load_image


def list_images(root: str | Path) -> list[Path]:
    paths = sorted(iter_image_paths([root]))
    if not paths:
        raise ValueError(f"no image files found under {root}")
    return paths


def data_digest(paths: list[Path], root: Path) -> str:
    """sha256 over the relative paths and sizes of the training files: names what a model saw."""
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.relative_to(root)}\t{p.stat().st_size}\n".encode())
    return h.hexdigest()


class SampleStream(Dataset):
    """Item ``k`` → (augmented views of image ``order(epoch)[pos]``, k, path), or None views if unreadable.

    Epoch orders are seeded permutations; augmentation randomness is seeded by (seed, k).
    """

    def __init__(self, paths: list[Path], transform: Callable, seed: int, samples_per_epoch: int,
                 max_side: int = 512) -> None:
        self.paths = paths
        self.transform = transform
        self.seed = seed
        self.samples_per_epoch = samples_per_epoch
        self.max_side = max_side
        self._orders: dict[int, list[int]] = {}

    def __len__(self) -> int:  # indices are global sample counters; the sampler bounds them
        return 2**62

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            gen = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            self._orders[epoch] = torch.randperm(len(self.paths), generator=gen).tolist()
        return self._orders[epoch]

    def __getitem__(self, k: int):
        epoch, pos = divmod(k, self.samples_per_epoch)
        path = self.paths[self._order(epoch)[pos]]
        try:
            img = load_image(path, target_long_side=self.max_side)
        except ImageDecodeError as exc:
            return None, k, str(exc)
        img.thumbnail((self.max_side, self.max_side))
        return self.transform(img, random.Random(f"{self.seed}-{k}")), k, str(path)


class StepSampler(torch.utils.data.Sampler):
    """Batches of consecutive sample counters from ``start_step`` to ``steps``."""

    def __init__(self, batch_size: int, start_step: int, steps: int) -> None:
        self.batch_size, self.start_step, self.steps = batch_size, start_step, steps

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            yield list(range(step * self.batch_size, (step + 1) * self.batch_size))

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)
