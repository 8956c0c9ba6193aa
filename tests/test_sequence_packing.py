"""Sequence packing of global and local crops gives what separate passes give.

On CPU the packed path runs its attention as SDPA with a dense block-diagonal mask (the same
layout xformers' bias describes on CUDA), so these tests prove the packing itself: token layout,
per-image attention, per-image stochastic depth, masks, registers, gradients.
"""

from __future__ import annotations

import pytest
import torch

from model import arch_by_name, build_vit
from model.layers.drop_path import DropPath
from model.layers.packing import PackedSequences, pack, unpack


@pytest.fixture(params=["vitt14", "vits14_reg4"])
def vit(request):
    torch.manual_seed(0)
    model = build_vit(arch_by_name(request.param))
    for block in model.blocks:  # LayerScale's 1e-5 would hide a wrong attention pattern
        for ls in (block.ls1, block.ls2):
            torch.nn.init.constant_(ls.gamma, 0.5)
    return model


def _crops(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    global_crops = torch.randn(4, 3, 56, 56, generator=g)
    local_crops = torch.randn(6, 3, 28, 42, generator=g)
    masks = torch.rand(4, 16, generator=g) < 0.4
    return global_crops, local_crops, masks


def test_pack_and_unpack_round_trip() -> None:
    a, b = torch.randn(2, 5, 8), torch.randn(3, 2, 8)
    packed, layout = pack([a, b])
    assert packed.shape == (1, 16, 8) and layout.seqlens == (5, 5, 2, 2, 2)
    back = unpack(packed, [(2, 5), (3, 2)])
    assert torch.equal(back[0], a) and torch.equal(back[1], b)
    mask = layout.dense_mask(torch.device("cpu"))
    assert mask[0, 4] and not mask[0, 5] and mask[10, 11] and not mask[11, 12]  # own image only
    with pytest.raises(ValueError, match="one width"):
        pack([a, torch.randn(1, 2, 4)])


def test_packed_forward_matches_separate_passes(vit) -> None:
    global_crops, local_crops, masks = _crops()
    vit.eval()
    with torch.no_grad():
        vit.sequence_packing = False
        separate = vit.forward_features_list([global_crops, local_crops], [masks, None])
        vit.sequence_packing = True
        packed = vit.forward_features_list([global_crops, local_crops], [masks, None])
    for s, p in zip(separate, packed):
        for key in ("x_norm_clstoken", "x_norm_regtokens", "x_norm_patchtokens", "x_prenorm"):
            assert s[key].shape == p[key].shape
            torch.testing.assert_close(p[key], s[key], atol=2e-5, rtol=1e-4)
    assert packed[0]["masks"] is masks and packed[1]["masks"] is None
    # and a different local batch changes nothing in the global outputs: no attention across images
    with torch.no_grad():
        other = vit.forward_features_list([global_crops, torch.randn_like(local_crops)], [masks, None])
    torch.testing.assert_close(other[0]["x_norm_clstoken"], packed[0]["x_norm_clstoken"], atol=2e-5, rtol=1e-4)


def test_packed_gradients_match_separate_passes(vit) -> None:
    # float64: in float32 the two orders of summation drift apart by ~1% through 12 blocks of
    # large residual branches, which would hide a real difference; in float64 they agree to 1e-12
    global_crops, local_crops, masks = _crops(2)
    global_crops, local_crops = global_crops.double(), local_crops.double()
    vit.double().train()
    grads = []
    for packing in (False, True):
        vit.zero_grad()
        vit.sequence_packing = packing
        out = vit.forward_features_list([global_crops, local_crops], [masks, None])
        loss = sum((o["x_norm_clstoken"] ** 2).sum() + o["x_norm_patchtokens"].mean() for o in out)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in vit.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-9, rtol=1e-7, msg=name)


def test_packed_stochastic_depth_drops_whole_images() -> None:
    torch.manual_seed(3)
    layout = PackedSequences((3, 3, 2, 2, 2, 2))
    drop = DropPath(0.5).train()
    out = drop(torch.ones(1, layout.total, 4), layout)[0, :, 0]
    per_image = out.split(layout.seqlens)
    assert all(len(set(seg.tolist())) == 1 for seg in per_image)  # each image kept or dropped whole
    assert {v for seg in per_image for v in seg.tolist()} <= {0.0, 2.0}


def test_packing_is_off_on_cpu_unless_asked(vit) -> None:
    assert not vit.packs_sequences("cpu")  # xformers never serves CPU tensors
    vit.sequence_packing = True
    assert vit.packs_sequences("cpu")
    with pytest.raises(ValueError, match="masks"):
        vit.forward_features_list([torch.randn(1, 3, 28, 28)], [None, None])
