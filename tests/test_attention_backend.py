"""Attention kernels: SDPA on CPU (xformers never imported there), xformers on CUDA when allowed."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from model import ViTArch, build_vit
from model.layers import attention_backend
from model.layers.attention import Attention


def test_cpu_always_uses_sdpa_and_never_imports_xformers(monkeypatch) -> None:
    monkeypatch.setenv("DINOSEEK_XFORMERS", "1")
    assert attention_backend("cpu") == "sdpa"
    vit = build_vit(ViTArch(embed_dim=64, depth=1, num_heads=1, img_size=56)).eval()
    with torch.no_grad():
        vit(torch.randn(1, 3, 56, 56))
    assert "xformers" not in sys.modules


def test_switch_disables_xformers_on_cuda(monkeypatch) -> None:
    monkeypatch.setenv("DINOSEEK_XFORMERS", "0")
    assert attention_backend("cuda") == "sdpa"
    assert attention_backend("cuda", allow_xformers=False) == "sdpa"


def test_without_xformers_installed_cuda_falls_back_to_sdpa(monkeypatch) -> None:
    if importlib.util.find_spec("xformers") is not None:
        pytest.skip("xformers is installed here")
    monkeypatch.setenv("DINOSEEK_XFORMERS", "1")
    assert attention_backend("cuda") == "sdpa"


def test_sdpa_matches_explicit_softmax_attention() -> None:
    attn = Attention(64, 4).eval()
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        got = attn(x)
        q, k, v = attn.qkv(x).reshape(2, 10, 3, 4, 16).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-1, -2) / 4.0).softmax(-1)
        expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 10, 64))
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(importlib.util.find_spec("xformers") is None, reason="needs xformers ([gpu] extra)")
def test_xformers_and_sdpa_agree_on_cuda(monkeypatch) -> None:
    monkeypatch.setenv("DINOSEEK_XFORMERS", "1")
    vit = build_vit(ViTArch(embed_dim=384, depth=4, num_heads=6)).cuda().eval()
    x = torch.randn(4, 3, 224, 224, device="cuda")
    assert attention_backend("cuda") == "xformers"
    with torch.no_grad():
        fast = vit.forward_features(x)["x_norm_patchtokens"]
        for block in vit.blocks:
            block.attn.allow_xformers = False
        plain = vit.forward_features(x)["x_norm_patchtokens"]
    assert (fast - plain).abs().max().item() < 1e-3
