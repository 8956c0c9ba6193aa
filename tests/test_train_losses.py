"""Training losses and schedules against hand-computed values on tiny tensors."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model.train.ema import ema_update
from model.train.heads import DINOHead
from model.train.losses import CopyDetectionLoss, DINOLoss, IBOTPatchLoss, KoLeoLoss, SoftmaxCenter, sinkhorn_knopp
from model.train.masking import BlockMaskGenerator, batch_masks
from model.train.optim import backbone_param_groups, layer_id
from model.train.schedules import cosine_schedule, linear_warmup


def test_sinkhorn_rows_are_distributions_and_prototypes_balanced() -> None:
    logits = torch.randn(64, 16) * 0.3  # cosine-like logits
    q = sinkhorn_knopp(logits, temperature=0.1, iterations=3)
    assert torch.allclose(q.sum(dim=1), torch.ones(64), atol=1e-5)  # each sample: a distribution
    # prototype marginals move towards B / K = 4 with every iteration, and reach it with many
    spread = [(sinkhorn_knopp(logits, 0.1, n).sum(dim=0) - 4).abs().max() for n in (1, 3, 10)]
    assert spread[0] > spread[1] > spread[2]
    assert (q.sum(dim=0) - 4).abs().max() < 1.5
    q_many = sinkhorn_knopp(logits, temperature=0.1, iterations=200)
    assert torch.allclose(q_many.sum(dim=0), torch.full((16,), 4.0), atol=1e-3)


def test_sinkhorn_hand_computed_2x2() -> None:
    # exp(logits / 1) = [[e, 1], [1, 1]]; one iteration by hand
    logits = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    e = math.e
    q = torch.tensor([[e, 1.0], [1.0, 1.0]])  # (B, K) here; the algorithm works on (K, B)
    q = q.t() / q.sum()
    q = q / q.sum(1, keepdim=True) / 2
    q = q / q.sum(0, keepdim=True) / 2
    expected = (q * 2).t()
    assert torch.allclose(sinkhorn_knopp(logits, 1.0, iterations=1), expected, atol=1e-6)


def test_softmax_center_subtracts_ema_of_teacher_mean() -> None:
    center = SoftmaxCenter(3, momentum=0.9)
    logits = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    first = center(logits, temperature=1.0)
    assert torch.allclose(first, F.softmax(logits, -1))  # centre starts at zero
    assert torch.allclose(center.center, torch.full((1, 3), 0.2))  # 0.1 × mean 2.0
    second = center(logits, temperature=0.5)
    assert torch.allclose(second, F.softmax((logits - 0.2) / 0.5, -1))


def test_dino_loss_is_cross_entropy_summed_over_pairs() -> None:
    s = torch.tensor([[0.0, math.log(3.0)]])  # softmax at τ=1: [0.25, 0.75]
    t = torch.tensor([[1.0, 0.0]])
    loss = DINOLoss(student_temp=1.0)([s, s], [t])
    assert loss.item() == pytest.approx(2 * -math.log(0.25), rel=1e-6)


def test_ibot_loss_averages_within_images_then_over_images() -> None:
    masks = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])
    s = torch.zeros(3, 2)  # uniform student → CE = ln 2 per patch
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    loss = IBOTPatchLoss(student_temp=1.0)(s, t, masks)
    # image 0: mean of two patches = ln2; image 1: no patches; image 2: ln2 → (2 ln2) / 3 images
    assert loss.item() == pytest.approx(2 * math.log(2) / 3, rel=1e-6)


def test_koleo_on_known_points() -> None:
    # unit vectors at 0°, 90°, 180°, 270°: every nearest neighbour is at distance √2
    x = torch.tensor([[1.0, 0], [0, 1.0], [-1.0, 0], [0, -1.0]])
    assert KoLeoLoss()(x).item() == pytest.approx(-math.log(math.sqrt(2)), abs=1e-5)
    # collapsing two points together makes the loss larger
    y = torch.tensor([[1.0, 0], [1.0, 0.01], [-1.0, 0], [0, -1.0]])
    assert KoLeoLoss()(y).item() > KoLeoLoss()(x).item() + 1.0


def test_copy_loss_prefers_matching_views() -> None:
    ids = torch.tensor([0, 0, 1, 1])
    good = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    bad = good[[0, 2, 1, 3]]
    loss = CopyDetectionLoss(temperature=0.1, entropy_weight=0.0)
    assert loss(good, ids)["infonce"] < loss(bad, ids)["infonce"]
    with pytest.raises(ValueError, match="at least one other view"):
        loss(good, torch.tensor([0, 1, 2, 3]))


def test_ema_update() -> None:
    teacher, student = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        teacher.weight.fill_(1.0), teacher.bias.fill_(0.0)
        student.weight.fill_(3.0), student.bias.fill_(10.0)
    ema_update(teacher, student, momentum=0.75)
    assert torch.allclose(teacher.weight, torch.full((1, 2), 1.5))
    assert torch.allclose(teacher.bias, torch.tensor([2.5]))


def test_schedules() -> None:
    assert cosine_schedule(0, 100, 1.0, 0.0, warmup_steps=10) == 0.0
    assert cosine_schedule(5, 100, 1.0, 0.0, warmup_steps=10) == pytest.approx(0.5)
    assert cosine_schedule(10, 100, 1.0, 0.0, warmup_steps=10) == pytest.approx(1.0)
    assert cosine_schedule(55, 100, 1.0, 0.0, warmup_steps=10) == pytest.approx(0.5)
    assert cosine_schedule(100, 100, 1.0, 0.0, warmup_steps=10) == pytest.approx(0.0)
    assert cosine_schedule(50, 100, 0.992, 1.0) == pytest.approx(0.996)  # teacher momentum midway
    assert linear_warmup(0, 30, 0.04, 0.07) == pytest.approx(0.04)
    assert linear_warmup(15, 30, 0.04, 0.07) == pytest.approx(0.055)
    assert linear_warmup(99, 30, 0.04, 0.07) == pytest.approx(0.07)


@pytest.mark.parametrize("num_masked", [0, 5, 20, 40])
def test_block_masks_hit_the_requested_count_within_bounds(num_masked) -> None:
    rng = random.Random(num_masked)
    mask = BlockMaskGenerator((8, 8))(num_masked, rng)
    assert mask.shape == (8, 8)
    # rectangles never overshoot the budget; they stop only when no block fits any more
    assert mask.sum() <= num_masked
    if num_masked >= 4:
        assert mask.sum() >= min(num_masked, 4)


def test_batch_masks_ratio_range_and_share() -> None:
    masks = batch_masks(40, (16, 16), (0.1, 0.5), 0.5, random.Random(0))
    ratios = masks.float().mean(dim=1)
    assert (ratios == 0).sum() == 20  # half the images unmasked
    masked = ratios[ratios > 0]
    assert masked.max() <= 0.5 + 1e-6 and masked.min() >= 0.05
    assert masked.std() > 0.05  # ratios are spread across the range, not all alike


def test_layer_decay_and_no_weight_decay_groups() -> None:
    from model import ViTArch, build_vit

    vit = build_vit(ViTArch(embed_dim=64, depth=2, num_heads=1, img_size=56))
    assert layer_id("pos_embed", 2) == 0 and layer_id("blocks.1.attn.qkv.weight", 2) == 2
    assert layer_id("norm.weight", 2) == 3
    groups = {g["name"]: g for g in backbone_param_groups(vit, 2, layer_decay=0.5)}
    assert groups["backbone.norm.weight"]["lr_multiplier"] == 1.0
    assert groups["backbone.blocks.1.mlp.fc1.weight"]["lr_multiplier"] == 0.5
    assert groups["backbone.blocks.0.mlp.fc1.weight"]["lr_multiplier"] == 0.25
    assert groups["backbone.patch_embed.proj.weight"]["lr_multiplier"] == pytest.approx(0.125 * 0.2)
    assert groups["backbone.blocks.0.ls1.gamma"]["wd_multiplier"] == 0.0
    assert groups["backbone.cls_token"]["wd_multiplier"] == 0.0
    assert groups["backbone.blocks.0.attn.qkv.weight"]["wd_multiplier"] == 1.0
    frozen = backbone_param_groups(vit, 2, 0.5, frozen_blocks=1)
    assert not any(g["name"].startswith(("backbone.blocks.0.", "backbone.patch_embed")) for g in frozen)


def test_dino_head_prototypes_have_unit_norm() -> None:
    head = DINOHead(32, out_dim=10, hidden_dim=16, bottleneck_dim=8)
    w = head.last_layer.weight
    assert torch.allclose(w.norm(dim=1), torch.ones(10), atol=1e-5)
    out = head(torch.randn(4, 32))
    assert out.shape == (4, 10) and out.abs().max() <= 1.0 + 1e-5  # cosine logits
