"""Building blocks of the DINOv2 Vision Transformer, one module per block.

Module and parameter names follow Meta's released checkpoints (``blocks.N.attn.qkv`` ...), so those
files load into this code without renaming.
"""

from model.layers.attention import Attention, attention_backend, xformers_enabled
from model.layers.block import Block
from model.layers.drop_path import DropPath
from model.layers.layer_scale import LayerScale
from model.layers.mlp import Mlp
from model.layers.patch_embed import PatchEmbed
from model.layers.swiglu_ffn import SwiGLUFFN

__all__ = [
    "Attention",
    "Block",
    "DropPath",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "SwiGLUFFN",
    "attention_backend",
    "xformers_enabled",
]
