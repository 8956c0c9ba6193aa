"""Numerical parity of our backbone with transformers' DINOv2 after moving weights through our converters."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from model import load_backbone
from model.checkpoint import backbone_from_object
from model.convert import hf_to_meta
from tests.support.hf_reference import make_hf_model, to_hub_naming

TOL = 1e-4
SIZES = [(518, 518), (224, 224), (224, 322)]  # native grid, resampled square, non-square

CONFIGS = {
    "tiny": dict(hidden=128, layers=2, heads=2),
    "tiny-swiglu": dict(hidden=128, layers=2, heads=2, swiglu=True),
    "tiny-reg4": dict(hidden=128, layers=2, heads=2, registers=True),
    "vits14": dict(hidden=384, layers=12, heads=6),
    "vits14-reg4": dict(hidden=384, layers=12, heads=6, registers=True),
}


def hf_resampling(vit, registers: bool):
    """transformers resizes positions to the target size; for the original (non-register) models
    that intentionally differs from Meta's scale-factor-with-offset formula, which
    ``test_official_interpolation_formula`` checks directly. Register models match as they are."""
    if not registers:
        vit.arch = dataclasses.replace(vit.arch, interpolate_offset=0.0)
    return vit


def compare(ours, hf, size, registers: bool) -> None:
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ref = hf(pixel_values=x).last_hidden_state
        got = ours.forward_features(x)
    r = 4 if registers else 0
    assert got["x_norm_patchtokens"].shape == (2, (size[0] // 14) * (size[1] // 14), ref.shape[-1])
    cls_err = (got["x_norm_clstoken"] - ref[:, 0]).abs().max().item()
    patch_err = (got["x_norm_patchtokens"] - ref[:, 1 + r :]).abs().max().item()
    assert cls_err <= TOL, f"CLS max abs diff {cls_err} at {size}"
    assert patch_err <= TOL, f"patch max abs diff {patch_err} at {size}"
    if registers:
        reg_err = (got["x_norm_regtokens"] - ref[:, 1 : 1 + r]).abs().max().item()
        assert reg_err <= TOL


@pytest.mark.parametrize("name", list(CONFIGS))
def test_hf_to_ours_parity(name: str) -> None:
    cfg = CONFIGS[name]
    hf = make_hf_model(**cfg)
    registers = cfg.get("registers", False)
    ours = hf_resampling(backbone_from_object(hf.state_dict(), num_heads=cfg["heads"]), registers)
    assert ours.arch.embed_dim == cfg["hidden"] and ours.arch.depth == cfg["layers"]
    assert ours.arch.ffn == ("swiglu" if cfg.get("swiglu") else "mlp")
    for size in SIZES:
        compare(ours, hf, size, registers)


@pytest.mark.parametrize("name", ["tiny-swiglu", "vits14-reg4"])
def test_hf_to_meta_layout_file_to_ours(name: str, tmp_path) -> None:
    """HF weights → Meta key layout saved as a .pth (plain and block-chunked) → load_backbone."""
    cfg = CONFIGS[name]
    hf = make_hf_model(**cfg)
    registers = cfg.get("registers", False)
    meta_sd = hf_to_meta(hf.state_dict())
    assert "blocks.0.attn.qkv.weight" in meta_sd and "pos_embed" in meta_sd
    plain = tmp_path / "dinov2_plain.pth"
    torch.save(meta_sd, plain)
    depth = cfg["layers"]
    chunked = {}
    for key, value in meta_sd.items():
        if key.startswith("blocks."):
            i = int(key.split(".")[1])
            key = f"blocks.{i * 2 // depth}.{key[len('blocks.'):]}"  # 2 chunks, global block index kept
        chunked[f"teacher.backbone.{key}"] = value
    chunked["teacher.dino_head.last_layer.weight"] = torch.zeros(3, 3)
    training = tmp_path / "model_0000099.rank_0.pth"
    torch.save({"model": chunked, "iteration": 99}, training)
    for path in (plain, training):
        ours = hf_resampling(load_backbone(path, num_heads=cfg["heads"]), registers)
        for size in SIZES:
            compare(ours, hf, size, registers)


@pytest.mark.parametrize("name", ["tiny-swiglu", "tiny-reg4"])
def test_hf_hub_directory_and_safetensors(name: str, tmp_path) -> None:
    """A save_pretrained-style directory with the Hub's key names (query/key/value, weights_in)."""
    from safetensors.torch import save_file

    cfg = CONFIGS[name]
    hf = make_hf_model(**cfg)
    registers = cfg.get("registers", False)
    sd = to_hub_naming(hf.state_dict())
    assert any("attention.attention.query" in k for k in sd)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(hf.config.to_dict()))
    ours = hf_resampling(load_backbone(tmp_path), registers)
    assert ours.arch.num_heads == cfg["heads"]
    compare(ours, hf, (224, 322), registers)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    ours_bin = hf_resampling(load_backbone(tmp_path / "pytorch_model.bin"), registers)
    compare(ours_bin, hf, (224, 224), registers)


def test_hf_masked_tokens_and_hidden_states() -> None:
    """iBOT mask tokens and intermediate layers line up with the reference's hidden states."""
    hf = make_hf_model(**CONFIGS["tiny"])
    ours = hf_resampling(backbone_from_object(hf.state_dict(), num_heads=2), False)
    x = torch.randn(2, 3, 224, 224)
    masks = torch.rand(2, 256) < 0.4
    with torch.no_grad():
        ref = hf(pixel_values=x, bool_masked_pos=masks, output_hidden_states=True)
        got = ours.forward_features(x, masks=masks)
        ref_plain = hf(pixel_values=x, output_hidden_states=True)
        inter = ours.get_intermediate_layers(x, n=[0, 1], norm=False)
        last_two = ours.get_intermediate_layers(x, n=2, reshape=True, return_class_token=True)
    assert (got["x_prenorm"] - ref.hidden_states[-1]).abs().max() <= TOL
    assert (got["x_norm_patchtokens"] - ref.last_hidden_state[:, 1:]).abs().max() <= TOL
    assert (got["x_norm_patchtokens"] - ref_plain.last_hidden_state[:, 1:]).abs().max() > 1e-2  # masks matter
    for i, out in enumerate(inter):
        assert (out - ref_plain.hidden_states[i + 1][:, 1:]).abs().max() <= TOL
    patches, cls = last_two[-1]
    assert patches.shape == (2, 128, 16, 16)
    assert (cls - ref_plain.last_hidden_state[:, 0]).abs().max() <= TOL
    assert (patches.flatten(2).transpose(1, 2) - ref_plain.last_hidden_state[:, 1:]).abs().max() <= TOL


def test_official_interpolation_formula() -> None:
    """Meta's resampling, written out here independently of the model code.

    Original models: bicubic with scale_factor ((h + 0.1) / M, (w + 0.1) / M), no antialias.
    Register models: bicubic to size (h, w) with antialias. (transformers' Dinov2Model resizes to
    size without the offset, which is why the parity tests above switch the offset off.)
    """
    hf = make_hf_model(**CONFIGS["tiny"])
    original = backbone_from_object(hf.state_dict(), num_heads=2)
    registered = backbone_from_object(make_hf_model(**CONFIGS["tiny-reg4"]).state_dict(), num_heads=2)
    assert original.arch.interpolate_offset == 0.1 and not original.arch.interpolate_antialias
    assert registered.arch.interpolate_offset == 0.0 and registered.arch.interpolate_antialias
    for vit, offset in ((original, 0.1), (registered, 0.0)):
        pos = vit.pos_embed.detach()
        grid = pos[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
        for h, w in [(16, 16), (16, 23), (9, 40)]:
            if offset:
                expected = F.interpolate(grid, scale_factor=((h + offset) / 37, (w + offset) / 37),
                                         mode="bicubic", antialias=False)
                size_based = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=False)
                assert (expected - size_based).abs().max() > 1e-3  # the two formulas really differ
            else:
                expected = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True)
            expected = torch.cat([pos[:, :1], expected.permute(0, 2, 3, 1).reshape(1, h * w, -1)], 1)
            got = vit.interpolate_pos_encoding(h, w).detach()
            assert torch.allclose(got, expected, atol=1e-6), (offset, h, w)
        assert vit.interpolate_pos_encoding(37, 37) is vit.pos_embed  # native grid untouched
