"""Sequence packing: run token sequences of different lengths through the blocks as one.

Training feeds the student two global crops and several small local crops per image. Run
separately, the local pass is many short sequences that leave a GPU underused; packed, every
image's tokens are laid end to end in one (1, T, D) tensor and attention is restricted to each
image's own block of the sequence. With xformers that restriction is its block-diagonal bias (no
T × T matrix is ever built); elsewhere a dense boolean mask does the same on small inputs, which is
how the CPU tests prove that packing changes nothing but the speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class PackedSequences:
    """Where each image's tokens lie in a packed (1, T, D) tensor: ``seqlens[i]`` tokens each, in order."""

    seqlens: tuple[int, ...]
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def total(self) -> int:
        return sum(self.seqlens)

    def dense_mask(self, device: torch.device) -> torch.Tensor:
        """(T, T) boolean mask, True where a token may attend: within its own sequence only."""
        key = ("dense", str(device))
        if key not in self._cache:
            owner = self.per_token(torch.arange(len(self.seqlens), device=device))
            self._cache[key] = owner[:, None] == owner[None, :]
        return self._cache[key]

    def xformers_bias(self):
        """xformers' block-diagonal attention bias for these sequence lengths."""
        if "xformers" not in self._cache:
            from xformers.ops import fmha  # only reached when xformers serves attention

            self._cache["xformers"] = fmha.BlockDiagonalMask.from_seqlens(list(self.seqlens))
        return self._cache["xformers"]

    def per_token(self, values: torch.Tensor) -> torch.Tensor:
        """One value per sequence → that value repeated for each of its tokens (length T)."""
        counts = torch.tensor(self.seqlens, device=values.device)
        return torch.repeat_interleave(values, counts, dim=0)


def pack(groups: list[torch.Tensor]) -> tuple[torch.Tensor, PackedSequences]:
    """Token batches (B_i, N_i, D) → one (1, Σ B_i·N_i, D) tensor and its layout."""
    if not groups:
        raise ValueError("nothing to pack")
    dims = {g.shape[-1] for g in groups}
    if len(dims) != 1 or any(g.ndim != 3 for g in groups):
        raise ValueError(f"expected (B, N, D) token batches of one width, got {[tuple(g.shape) for g in groups]}")
    seqlens = tuple(n for g in groups for n in [g.shape[1]] * g.shape[0])
    return torch.cat([g.reshape(1, -1, g.shape[-1]) for g in groups], dim=1), PackedSequences(seqlens)


def unpack(packed: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Inverse of ``pack``: (1, T, D) → token batches of the given (B_i, N_i) shapes."""
    sizes = [b * n for b, n in shapes]
    parts = packed.reshape(-1, packed.shape[-1]).split(sizes, dim=0)
    return [p.reshape(b, n, -1) for p, (b, n) in zip(parts, shapes)]
