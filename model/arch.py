"""Architecture descriptions of DINOv2 Vision Transformers and the released sizes.

An ``ViTArch`` is everything needed to build an empty backbone; it is stored in dinoseek
checkpoints and inferred from tensor shapes for Meta and Hugging Face files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from model.layers.swiglu_ffn import swiglu_hidden_features

# Head count cannot be read from weight shapes; DINOv2 uses 64-wide heads except ViT-g (24 x 64).
_HEADS_BY_DIM = {192: 3, 384: 6, 768: 12, 1024: 16, 1536: 24}


def default_num_heads(embed_dim: int) -> int:
    """Heads DINOv2 uses for ``embed_dim``; 64-wide heads for sizes it never released."""
    if embed_dim in _HEADS_BY_DIM:
        return _HEADS_BY_DIM[embed_dim]
    if embed_dim % 64 == 0:
        return embed_dim // 64
    raise ValueError(f"cannot infer the head count for embedding dim {embed_dim}; pass num_heads")


@dataclass(frozen=True)
class ViTArch:
    """Shape and behaviour of one DINOv2 ViT.

    ``interpolate_offset`` / ``interpolate_antialias`` reproduce the two positional-embedding
    resampling behaviours of Meta's code: the original models resample bicubically with a scale
    factor of ``(grid + 0.1) / native`` and no antialias; the register models resample to the
    target size with antialias.
    """

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 14
    img_size: int = 518
    num_register_tokens: int = 0
    ffn: str = "mlp"
    ffn_hidden: int = 0
    layerscale: bool = True
    interpolate_offset: float = 0.1
    interpolate_antialias: bool = False
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.ffn not in ("mlp", "swiglu"):
            raise ValueError(f"ffn must be 'mlp' or 'swiglu', got {self.ffn!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.ffn_hidden <= 0:
            hidden = (
                swiglu_hidden_features(self.embed_dim) if self.ffn == "swiglu" else 4 * self.embed_dim
            )
            object.__setattr__(self, "ffn_hidden", hidden)

    @property
    def grid_size(self) -> int:
        """Side of the native positional-embedding grid (37 for 518 px / 14)."""
        return self.img_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ViTArch":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown architecture fields {unknown}")
        return cls(**data)


def _released(embed_dim: int, depth: int, ffn: str = "mlp", registers: int = 0) -> ViTArch:
    reg = registers > 0
    return ViTArch(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=default_num_heads(embed_dim),
        num_register_tokens=registers,
        ffn=ffn,
        interpolate_offset=0.0 if reg else 0.1,
        interpolate_antialias=reg,
    )


ARCHS: dict[str, ViTArch] = {
    "vitt14": _released(192, 12),  # not released by Meta: the small CPU-trainable size
    "vits14": _released(384, 12),
    "vitb14": _released(768, 12),
    "vitl14": _released(1024, 24),
    "vitg14": _released(1536, 40, ffn="swiglu"),
}
ARCHS.update({f"{name}_reg4": _released(a.embed_dim, a.depth, a.ffn, 4) for name, a in list(ARCHS.items())})


def arch_by_name(name: str) -> ViTArch:
    """Look up a named architecture (``vits14``, ``vitb14_reg4``, ``dinov2_vitl14`` ...)."""
    key = name.lower().removeprefix("dinov2_")
    if key not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}")
    return ARCHS[key]
