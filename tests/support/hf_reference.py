"""Helpers that build Hugging Face DINOv2 reference models with random weights (test-only)."""

from __future__ import annotations

import re

import torch


def make_hf_model(hidden: int, layers: int, heads: int, registers: bool = False, swiglu: bool = False,
                  seed: int = 0):
    """A transformers Dinov2(WithRegisters)Model with every parameter randomised (seeded)."""
    from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    common = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=4 * hidden, image_size=518, patch_size=14, layerscale_value=1.0)
    if registers:
        config = Dinov2WithRegistersConfig(num_register_tokens=4, **common)
        model = Dinov2WithRegistersModel(config)
    else:
        config = Dinov2Config(use_swiglu_ffn=swiglu, **common)
        model = Dinov2Model(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "layernorm.weight":
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif "lambda1" in name:
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


_HUB_NAMES = [
    (r"\.attention\.q_proj\.", ".attention.attention.query."),
    (r"\.attention\.k_proj\.", ".attention.attention.key."),
    (r"\.attention\.v_proj\.", ".attention.attention.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.mlp\.down_proj\.", ".mlp.weights_out."),
]


def to_hub_naming(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers-5 in-memory names → the names found in checkpoint files on the Hub."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if ".mlp.gate_proj." in key:
            up = sd[key.replace("gate_proj", "up_proj")]
            out[key.replace("gate_proj", "weights_in")] = torch.cat([value, up], 0)
            continue
        if ".mlp.up_proj." in key:
            continue
        for pattern, repl in _HUB_NAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out
