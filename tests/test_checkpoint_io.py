"""Checkpoint I/O: our format round-trips exactly; bad files fail loudly and name the problem."""

from __future__ import annotations

import pytest
import torch

from model import CheckpointError, arch_by_name, build_vit, load_backbone, save_checkpoint
from model.arch import ViTArch
from model.checkpoint import FORMAT, file_digest


def tiny_arch(**kw) -> ViTArch:
    return ViTArch(embed_dim=64, depth=2, num_heads=1, img_size=112, **kw)


@pytest.mark.parametrize("registers,ffn", [(0, "mlp"), (4, "swiglu")])
def test_round_trip_is_exact(tmp_path, registers, ffn) -> None:
    vit = build_vit(tiny_arch(num_register_tokens=registers, ffn=ffn)).eval()
    path = tmp_path / "m.pt"
    digest = save_checkpoint(vit, path, train={"steps": 7, "config": {"preset": "test"}})
    assert digest == file_digest(path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["train"]["steps"] == 7 and raw["created"]
    loaded = load_backbone(path)
    assert loaded.arch == vit.arch
    assert loaded.checkpoint_digest == digest
    x = torch.randn(2, 3, 70, 98)
    with torch.no_grad():
        a, b = vit.forward_features(x), loaded.forward_features(x)
    for key in ("x_norm_clstoken", "x_norm_patchtokens", "x_prenorm"):
        assert torch.equal(a[key], b[key])


def test_fp16_checkpoint_is_half_size_and_close(tmp_path) -> None:
    vit = build_vit(tiny_arch()).eval()
    save_checkpoint(vit, tmp_path / "fp32.pt")
    save_checkpoint(vit, tmp_path / "fp16.pt", dtype=torch.float16)
    assert (tmp_path / "fp16.pt").stat().st_size < 0.6 * (tmp_path / "fp32.pt").stat().st_size
    loaded = load_backbone(tmp_path / "fp16.pt")
    assert loaded.pos_embed.dtype == torch.float32
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        cos = torch.cosine_similarity(vit(x), loaded(x)).item()
    assert cos > 0.999


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path) -> None:
    vit = build_vit(tiny_arch())
    save_checkpoint(vit, tmp_path / "a.pt")
    save_checkpoint(vit, tmp_path / "a.pt")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_meta_layout_infers_released_architecture(tmp_path) -> None:
    for name, heads in [("vits14_reg4", 6), ("vitb14", 12)]:
        vit = build_vit(arch_by_name(name))
        path = tmp_path / f"dinov2_{name}_pretrain.pth"
        torch.save(vit.state_dict(), path)
        loaded = load_backbone(f"dinov2_{name}_pretrain.pth", search_dirs=[tmp_path])
        assert loaded.arch == arch_by_name(name)
        assert loaded.arch.num_heads == heads


def test_vitg_uses_swiglu_with_dinov2_width() -> None:
    arch = arch_by_name("vitg14")
    assert arch.ffn == "swiglu" and arch.ffn_hidden == 4096 and arch.num_heads == 24 and arch.depth == 40


def test_missing_and_unexpected_keys_are_named(tmp_path) -> None:
    sd = build_vit(tiny_arch()).state_dict()
    del sd["blocks.1.mlp.fc2.weight"]
    sd["blocks.1.attn.surprise"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        load_backbone(path, num_heads=1)
    msg = str(err.value)
    assert "blocks.1.mlp.fc2.weight" in msg and "blocks.1.attn.surprise" in msg and str(path) in msg


def test_shape_mismatch_is_named(tmp_path) -> None:
    vit = build_vit(tiny_arch())
    payload = torch.load(_save(vit, tmp_path), weights_only=True)
    payload["state_dict"]["norm.weight"] = torch.ones(65)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch: norm.weight \(65,\) vs \(64,\)"):
        load_backbone(tmp_path / "bad.pt")


def _save(vit, folder):
    path = folder / "ok.pt"
    save_checkpoint(vit, path)
    return path


@pytest.mark.parametrize(
    "content,pattern",
    [
        (b"", "file is empty"),
        (b"\x00garbage" * 100, "not a readable PyTorch checkpoint"),
    ],
)
def test_corrupt_files_fail_clearly(tmp_path, content, pattern) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=pattern):
        load_backbone(path)


def test_truncated_checkpoint_fails_clearly(tmp_path) -> None:
    path = _save(build_vit(tiny_arch()), tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_backbone(path)


class _Payload:
    pass


def test_pickled_objects_are_refused_by_weights_only(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"obj": _Payload()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_backbone(path)


def test_non_backbone_checkpoint(tmp_path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7)}, path)
    with pytest.raises(CheckpointError, match="not a DINOv2 backbone: missing cls_token"):
        load_backbone(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="no tensor state dict found"):
        load_backbone(path)


def test_bad_safetensors_and_missing_names(tmp_path) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"{not safetensors}")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_backbone(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_backbone("dinov2_vits14_nowhere", search_dirs=[tmp_path])
    with pytest.raises(CheckpointError, match="neither model.safetensors"):
        load_backbone(_empty_dir(tmp_path))


def _empty_dir(root):
    folder = root / "hf_empty"
    folder.mkdir()
    return folder


def test_recommended_inference_settings_travel_with_the_checkpoint(tmp_path) -> None:
    from model import Embedder

    vit = build_vit(tiny_arch())
    vit.embed_defaults = {"image_size": 112, "pooling": "gem"}
    save_checkpoint(vit, tmp_path / "m.pt")
    loaded = load_backbone(tmp_path / "m.pt")
    assert loaded.embed_defaults == {"image_size": 112, "pooling": "gem"}
    emb = Embedder(loaded, device="cpu")
    assert emb.image_size == 112 and emb.pooling == "gem" and emb.dim == 64
    explicit = Embedder(loaded, device="cpu", image_size=224, pooling="cls+gem")
    assert explicit.image_size == 224 and explicit.dim == 128
    meta = tmp_path / "meta.pth"
    torch.save(vit.state_dict(), meta)
    assert load_backbone(meta, num_heads=1).embed_defaults == {}
