"""Multi-head self-attention with a fused qkv projection.

The kernel is torch's ``scaled_dot_product_attention`` everywhere, or xformers'
memory-efficient attention when xformers is importable, the tensors are on CUDA and the switch
``DINOSEEK_XFORMERS`` is not set to 0/false/off. xformers is imported lazily and only for CUDA
tensors: it fails to run on CPU, and importing it there costs start-up time for nothing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from types import ModuleType
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from model.layers.packing import PackedSequences

Backend = Literal["sdpa", "xformers"]
_DISABLED_VALUES = {"0", "false", "off", "no"}


def xformers_enabled() -> bool:
    """Whether the environment allows xformers (``DINOSEEK_XFORMERS``, default on)."""
    return os.environ.get("DINOSEEK_XFORMERS", "1").strip().lower() not in _DISABLED_VALUES


@functools.lru_cache(maxsize=1)
def _xformers_ops() -> ModuleType | None:
    """Import ``xformers.ops`` once; None when it is not installed or fails to import."""
    if importlib.util.find_spec("xformers") is None:
        return None
    try:
        return importlib.import_module("xformers.ops")
    except Exception:  # a broken install (wrong CUDA/torch build) must not break inference
        return None


def attention_backend(device_type: str, allow_xformers: bool | None = None) -> Backend:
    """Pick the kernel for tensors on ``device_type``; never touches xformers off CUDA."""
    if device_type != "cuda":
        return "sdpa"
    allowed = xformers_enabled() if allow_xformers is None else allow_xformers
    if allowed and _xformers_ops() is not None:
        return "xformers"
    return "sdpa"


class Attention(nn.Module):
    """Self-attention over (B, N, D) tokens; parameters ``qkv`` and ``proj`` as in Meta's weights."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        # None follows DINOSEEK_XFORMERS; True/False forces the choice for this module.
        self.allow_xformers: bool | None = None

    def forward(self, x: torch.Tensor, packed: PackedSequences | None = None) -> torch.Tensor:
        """``packed``: ``x`` is (1, T, D) holding several sequences; each attends only within itself."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
        if attention_backend(x.device.type, self.allow_xformers) == "xformers":
            ops = _xformers_ops()
            q, k, v = qkv.unbind(2)  # (B, N, H, hd): the layout xformers expects
            out = ops.memory_efficient_attention(q, k, v, attn_bias=packed.xformers_bias() if packed else None)
        else:
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, hd)
            mask = packed.dense_mask(x.device) if packed else None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
        return self.proj(out.reshape(b, n, d))
