"""State-dict layouts: Meta's DINOv2 (ours), Meta's block-chunked and training files, Hugging Face.

Everything is converted *to* Meta's plain key layout, which is the layout of
``DinoVisionTransformer``; ``infer_arch`` then reads the architecture from tensor shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from model.arch import ViTArch, default_num_heads

StateDict = dict[str, torch.Tensor]

# Wrappers a training checkpoint may nest the backbone in, most preferred first.
_WRAPPER_KEYS = ("teacher", "model", "state_dict", "student")
# Prefixes in front of backbone keys in training files and wrapped models.
_PREFIXES = ("module.", "_orig_mod.", "teacher.backbone.", "student.backbone.", "backbone.", "dinov2.")
# Heads that sit next to a backbone in training / classification files; not part of a backbone.
_HEAD_PREFIXES = ("dino_head.", "ibot_head.", "classifier.", "head.")

_CHUNKED = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)$")
_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")


def is_state_dict(obj: Any) -> bool:
    """A non-empty mapping from strings to tensors."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def unwrap_checkpoint(obj: Any) -> StateDict:
    """Find the backbone state dict inside a plain file, a training checkpoint or a wrapper dict."""
    if is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if key in obj:
                try:
                    return unwrap_checkpoint(obj[key])
                except ValueError:
                    continue
    raise ValueError("no tensor state dict found (looked for a plain state dict and the keys "
                     f"{', '.join(_WRAPPER_KEYS)})")


def strip_prefixes(sd: StateDict) -> StateDict:
    """Select the backbone's keys: prefer the teacher's, drop wrapper prefixes and heads."""
    if any(k.startswith("teacher.backbone.") for k in sd):
        sd = {k: v for k, v in sd.items() if k.startswith("teacher.backbone.")}
    elif any(k.startswith("student.backbone.") for k in sd):
        sd = {k: v for k, v in sd.items() if k.startswith("student.backbone.")}
    out: StateDict = {}
    for key, value in sd.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    changed = True
        if key.startswith(_HEAD_PREFIXES):
            continue
        out[key] = value
    return out


def unchunk_blocks(sd: StateDict) -> StateDict:
    """``blocks.<chunk>.<i>.x`` (Meta's FSDP block chunks) → ``blocks.<i>.x``."""
    if not any(_CHUNKED.match(k) for k in sd):
        return sd
    out: StateDict = {}
    for key, value in sd.items():
        m = _CHUNKED.match(key)
        out[f"blocks.{m.group(2)}.{m.group(3)}" if m else key] = value
    return out


def is_hf_layout(sd: StateDict) -> bool:
    return any(k.startswith(("embeddings.", "encoder.layer.")) for k in sd)


_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.mask_token": "mask_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.register_tokens": "register_tokens",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
# Per-layer renames; both the Hub's file naming and transformers 5's in-memory naming.
_HF_LAYER_RENAMES = {
    "norm1.": "norm1.",
    "norm2.": "norm2.",
    "attention.output.dense.": "attn.proj.",
    "attention.o_proj.": "attn.proj.",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
    "mlp.weights_in.": "mlp.w12.",
    "mlp.weights_out.": "mlp.w3.",
    "mlp.down_proj.": "mlp.w3.",
}
# Tensors Meta stores fused that Hugging Face stores split: (parts in order, fused name).
_HF_FUSED = (
    (("attention.attention.query.", "attention.attention.key.", "attention.attention.value."), "attn.qkv."),
    (("attention.q_proj.", "attention.k_proj.", "attention.v_proj."), "attn.qkv."),
    (("mlp.gate_proj.", "mlp.up_proj."), "mlp.w12."),
)


def hf_to_meta(sd: StateDict) -> StateDict:
    """Hugging Face ``Dinov2Model`` / ``Dinov2WithRegistersModel`` keys → Meta's layout.

    Keys it does not recognise are kept unchanged, so strict loading reports them.
    """
    out: StateDict = {}
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if key in _HF_TOP:
            out[_HF_TOP[key]] = value
            continue
        m = _HF_LAYER.match(key)
        if m:
            layers.setdefault(int(m.group(1)), {})[m.group(2)] = value
        else:
            out[key] = value
    for index, params in layers.items():
        for parts, fused in _HF_FUSED:
            for suffix in ("weight", "bias"):
                names = [p + suffix for p in parts]
                if all(n in params for n in names):
                    out[f"blocks.{index}.{fused}{suffix}"] = torch.cat([params.pop(n) for n in names], 0)
        for name, value in params.items():
            for old, new in _HF_LAYER_RENAMES.items():
                if name.startswith(old):
                    out[f"blocks.{index}.{new}{name[len(old):]}"] = value
                    break
            else:
                out[f"encoder.layer.{index}.{name}"] = value  # unknown: left for strict loading
    return out


def to_meta_layout(obj: Any) -> StateDict:
    """Any supported checkpoint object → a backbone state dict in Meta's plain layout."""
    sd = strip_prefixes(unwrap_checkpoint(obj))
    if is_hf_layout(sd):
        sd = hf_to_meta(sd)
    return unchunk_blocks(sd)


def infer_arch(sd: StateDict, num_heads: int | None = None, norm_eps: float = 1e-6) -> ViTArch:
    """Read the architecture off a Meta-layout state dict's shapes.

    Head count is not visible in shapes: ``num_heads`` or DINOv2's convention fills it in.
    """
    required = ("cls_token", "pos_embed", "patch_embed.proj.weight")
    missing = [k for k in required if k not in sd]
    if missing:
        raise ValueError(f"not a DINOv2 backbone: missing {', '.join(missing)}")
    embed_dim = sd["cls_token"].shape[-1]
    patch_size = sd["patch_embed.proj.weight"].shape[-1]
    positions = sd["pos_embed"].shape[1] - 1
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise ValueError(f"pos_embed has {positions} patch positions, which is not a square grid")
    block_ids = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    if not block_ids:
        raise ValueError("not a DINOv2 backbone: no transformer blocks found")
    depth = max(block_ids) + 1
    registers = sd["register_tokens"].shape[1] if "register_tokens" in sd else 0
    if "blocks.0.mlp.w12.weight" in sd:
        ffn, hidden = "swiglu", sd["blocks.0.mlp.w12.weight"].shape[0] // 2
    elif "blocks.0.mlp.fc1.weight" in sd:
        ffn, hidden = "mlp", sd["blocks.0.mlp.fc1.weight"].shape[0]
    else:
        raise ValueError("not a DINOv2 backbone: block 0 has neither mlp.fc1 nor mlp.w12")
    return ViTArch(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads or default_num_heads(embed_dim),
        patch_size=patch_size,
        img_size=grid * patch_size,
        num_register_tokens=registers,
        ffn=ffn,
        ffn_hidden=hidden,
        layerscale="blocks.0.ls1.gamma" in sd,
        interpolate_offset=0.0 if registers else 0.1,
        interpolate_antialias=bool(registers),
        norm_eps=norm_eps,
    )
