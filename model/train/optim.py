"""Parameter groups with layer-wise learning-rate decay and no weight decay on gains, biases, tokens."""

from __future__ import annotations

from torch import nn

# Parameters that carry no weight decay: biases, norms, LayerScale gains and learned tokens.
_NO_DECAY_SUFFIXES = (".bias", "norm.weight", "norm1.weight", "norm2.weight", ".gamma")
_NO_DECAY_NAMES = ("cls_token", "pos_embed", "register_tokens", "mask_token")


def layer_id(name: str, depth: int) -> int:
    """0 for the embeddings, i + 1 for block i, depth + 1 for the final norm and anything after."""
    if name.startswith(("cls_token", "pos_embed", "register_tokens", "mask_token", "patch_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def backbone_param_groups(backbone: nn.Module, depth: int, layer_decay: float, patch_embed_lr_mult: float = 0.2,
                          frozen_blocks: int = 0) -> list[dict]:
    """One group per parameter with ``lr_multiplier`` (layer decay) and ``wd_multiplier`` (0 or 1).

    ``frozen_blocks`` > 0 freezes the embeddings and the first blocks (fine-tuning).
    """
    groups = []
    for name, param in backbone.named_parameters():
        lid = layer_id(name, depth)
        if frozen_blocks and lid <= frozen_blocks:
            param.requires_grad_(False)
        if not param.requires_grad:
            continue
        lr_mult = layer_decay ** (depth + 1 - lid)
        if name.startswith("patch_embed"):
            lr_mult *= patch_embed_lr_mult
        no_decay = name.endswith(_NO_DECAY_SUFFIXES) or name in _NO_DECAY_NAMES or param.ndim == 1
        groups.append({"params": [param], "name": f"backbone.{name}", "lr_multiplier": lr_mult,
                       "wd_multiplier": 0.0 if no_decay else 1.0, "is_last_layer": False})
    return groups


def head_param_groups(head: nn.Module, prefix: str) -> list[dict]:
    """Head parameters at the full learning rate; the prototype layer is flagged for freezing early on."""
    groups = []
    for name, param in head.named_parameters():
        if not param.requires_grad:
            continue
        groups.append({"params": [param], "name": f"{prefix}.{name}", "lr_multiplier": 1.0,
                       "wd_multiplier": 0.0 if param.ndim == 1 else 1.0, "is_last_layer": "last_layer" in name})
    return groups
