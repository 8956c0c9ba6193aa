"""The DINOv2 Vision Transformer backbone (no classification head).

Parameter names match Meta's released checkpoints; behaviour (token layout, positional
embedding resampling, register tokens, output dictionary) matches Meta's ``DinoVisionTransformer``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from model.arch import ViTArch
from model.layers import Block, Mlp, PatchEmbed, SwiGLUFFN, attention_backend
from model.layers.packing import pack, unpack


class DinoVisionTransformer(nn.Module):
    """ViT with a CLS token, optional register tokens, LayerScale and a final LayerNorm."""

    def __init__(self, arch: ViTArch, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.arch = arch
        d = arch.embed_dim
        self.embed_dim = d
        self.patch_size = arch.patch_size
        self.num_register_tokens = arch.num_register_tokens
        self.patch_embed = PatchEmbed(arch.patch_size, 3, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + arch.grid_size**2, d))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, arch.num_register_tokens, d)) if arch.num_register_tokens else None
        )
        self.mask_token = nn.Parameter(torch.zeros(1, d))
        rates = torch.linspace(0, drop_path_rate, arch.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(
                d,
                arch.num_heads,
                self._make_ffn(arch),
                layerscale_init=1e-5 if arch.layerscale else None,
                drop_path=rate,
                norm_eps=arch.norm_eps,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(d, eps=arch.norm_eps)
        # Inference settings the weights were made for ({"image_size": 112, "pooling": "cls+gem"});
        # stored in dinoseek checkpoints, used by Embedder where the caller gives none.
        self.embed_defaults: dict = {}
        # Pack several crop batches into one sequence in forward_features_list: None = only where
        # xformers serves attention (its block-diagonal bias makes packing pay); True/False forces it.
        self.sequence_packing: bool | None = None
        self.reset_parameters()

    @staticmethod
    def _make_ffn(arch: ViTArch) -> nn.Module:
        if arch.ffn == "swiglu":
            return SwiGLUFFN(arch.embed_dim, arch.ffn_hidden)
        return Mlp(arch.embed_dim, arch.ffn_hidden)

    def reset_parameters(self) -> None:
        """DINOv2's initialisation: truncated normal for weights and positions, tiny CLS/registers."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        nn.init.zeros_(self.mask_token)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ tokens
    def interpolate_pos_encoding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Positional embeddings (1, 1 + grid_h*grid_w, D) for a patch grid, resampled as Meta does."""
        native = self.arch.grid_size
        pos = self.pos_embed
        if grid_h == native and grid_w == native:
            return pos
        dtype = pos.dtype
        pos = pos.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        patch_pos = patch_pos.reshape(1, native, native, -1).permute(0, 3, 1, 2)
        if self.arch.interpolate_offset:
            # Meta's original models: a scale factor with a +offset, which PyTorch also uses to map
            # output to input coordinates, so it is not the same as resizing to (grid_h, grid_w).
            off = self.arch.interpolate_offset
            resize = {"scale_factor": ((grid_h + off) / native, (grid_w + off) / native)}
        else:
            resize = {"size": (grid_h, grid_w)}
        patch_pos = F.interpolate(
            patch_pos, mode="bicubic", antialias=self.arch.interpolate_antialias, **resize
        )
        if patch_pos.shape[-2:] != (grid_h, grid_w):
            raise RuntimeError(f"positional resampling gave {tuple(patch_pos.shape[-2:])}, wanted {(grid_h, grid_w)}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat((cls_pos, patch_pos), dim=1).to(dtype)

    def prepare_tokens(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Image (B, 3, H, W) → tokens (B, 1 + R + N, D): CLS, registers, then patches row-major."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        b, _, h, w = x.shape
        tokens = self.patch_embed(x)
        if masks is not None:
            tokens = torch.where(masks.unsqueeze(-1), self.mask_token.to(tokens.dtype).unsqueeze(0), tokens)
        tokens = torch.cat((self.cls_token.expand(b, -1, -1), tokens), dim=1)
        tokens = tokens + self.interpolate_pos_encoding(h // self.patch_size, w // self.patch_size)
        if self.register_tokens is not None:
            tokens = torch.cat((tokens[:, :1], self.register_tokens.expand(b, -1, -1), tokens[:, 1:]), dim=1)
        return tokens

    # ----------------------------------------------------------------- outputs
    def forward_features(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Normalised CLS, register and patch tokens, plus the pre-norm token sequence."""
        tokens = self.prepare_tokens(x, masks)
        for block in self.blocks:
            tokens = block(tokens)
        return self._outputs(tokens, masks)

    def _outputs(self, tokens: torch.Tensor, masks: torch.Tensor | None) -> dict[str, torch.Tensor]:
        normed = self.norm(tokens)
        r = self.num_register_tokens
        return {
            "x_norm_clstoken": normed[:, 0],
            "x_norm_regtokens": normed[:, 1 : 1 + r],
            "x_norm_patchtokens": normed[:, 1 + r :],
            "x_prenorm": tokens,
            "masks": masks,
        }

    def packs_sequences(self, device_type: str) -> bool:
        """Whether ``forward_features_list`` packs its inputs for tensors on ``device_type``."""
        if self.sequence_packing is not None:
            return self.sequence_packing
        return attention_backend(device_type, self.blocks[0].attn.allow_xformers) == "xformers"

    def forward_features_list(self, xs: Sequence[torch.Tensor],
                              masks_list: Sequence[torch.Tensor | None] | None = None) -> list[dict[str, torch.Tensor]]:
        """``forward_features`` for several image batches of different sizes (global and local
        crops) at once: packed into one sequence with per-image attention where that pays (see
        ``layers.packing``), one pass per batch otherwise. Same results either way."""
        masks_list = list(masks_list) if masks_list is not None else [None] * len(xs)
        if len(masks_list) != len(xs):
            raise ValueError(f"got {len(xs)} image batches but {len(masks_list)} masks")
        if not self.packs_sequences(xs[0].device.type):
            return [self.forward_features(x, m) for x, m in zip(xs, masks_list)]
        groups = [self.prepare_tokens(x, m) for x, m in zip(xs, masks_list)]
        tokens, layout = pack(groups)
        for block in self.blocks:
            tokens = block(tokens, layout)
        return [self._outputs(t, m) for t, m in zip(unpack(tokens, [g.shape[:2] for g in groups]), masks_list)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised CLS token (B, D)."""
        return self.forward_features(x)["x_norm_clstoken"]

    def get_intermediate_layers(
        self,
        x: torch.Tensor,
        n: int | Sequence[int] = 1,
        reshape: bool = False,
        return_class_token: bool = False,
        norm: bool = True,
    ) -> tuple:
        """Patch tokens after the last ``n`` blocks (or the blocks indexed by ``n``), as in Meta's API.

        ``reshape`` returns (B, D, h, w) maps; ``return_class_token`` pairs each with its CLS token.
        """
        depth = len(self.blocks)
        wanted = set(range(depth - n, depth)) if isinstance(n, int) else set(n)
        bad = [i for i in wanted if not 0 <= i < depth]
        if bad:
            raise ValueError(f"block indices {sorted(bad)} out of range for depth {depth}")
        b, _, h, w = x.shape
        tokens = self.prepare_tokens(x)
        outputs = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in wanted:
                outputs.append(self.norm(tokens) if norm else tokens)
        class_tokens = [out[:, 0] for out in outputs]
        patches = [out[:, 1 + self.num_register_tokens :] for out in outputs]
        if reshape:
            gh, gw = h // self.patch_size, w // self.patch_size
            patches = [p.reshape(b, gh, gw, -1).permute(0, 3, 1, 2).contiguous() for p in patches]
        if return_class_token:
            return tuple(zip(patches, class_tokens))
        return tuple(patches)


def build_vit(arch: ViTArch, drop_path_rate: float = 0.0) -> DinoVisionTransformer:
    """A freshly initialised backbone of the given architecture."""
    return DinoVisionTransformer(arch, drop_path_rate=drop_path_rate)
