"""Global descriptors from backbone outputs: CLS, GeM over patch tokens, or both."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POOLINGS = ("cls", "gem", "cls+gem")


def descriptor_dim(token_dim: int, pooling: str) -> int:
    """Length of the global descriptor of tokens of ``token_dim``: ``cls+gem`` concatenates two."""
    return 2 * token_dim if pooling == "cls+gem" else token_dim


def token_dim(descriptor_dim: int, pooling: str) -> int:
    """Length of the patch tokens behind a global descriptor of ``descriptor_dim`` (the inverse)."""
    return descriptor_dim // 2 if pooling == "cls+gem" else descriptor_dim


def signed_gem(patch_tokens: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    """Generalised mean over tokens (B, N, D) → (B, D), sign-preserving.

    ViT tokens are signed, so the ReLU-feature GeM of CNN retrieval (clamp at 0) would discard
    half the signal; the signed power mean keeps it and still emphasises strong activations.
    """
    x = patch_tokens.float()
    m = (x.sign() * x.abs().pow(p)).mean(dim=1)
    return m.sign() * (m.abs() + 1e-6).pow(1.0 / p)  # +eps: a finite gradient where m = 0 (training)


def global_descriptor(cls_token: torch.Tensor, patch_tokens: torch.Tensor, pooling: str = "cls+gem",
                      gem_p: float = 3.0) -> torch.Tensor:
    """L2-normalised global vector (B, D or 2D) for the chosen pooling.

    ``cls+gem`` concatenates the two L2-normalised parts scaled by 1/√2, so the cosine of two
    descriptors is the mean of the CLS cosine and the GeM cosine.
    """
    if pooling == "cls":
        return F.normalize(cls_token.float(), dim=-1)
    gem = F.normalize(signed_gem(patch_tokens, gem_p), dim=-1)
    if pooling == "gem":
        return gem
    if pooling == "cls+gem":
        cls = F.normalize(cls_token.float(), dim=-1)
        return torch.cat((cls, gem), dim=-1) / math.sqrt(2.0)
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
