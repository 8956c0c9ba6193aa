"""Training augmentations: shapes, determinism per seed, and that the edits really change the image."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import ImageChops

from model.train.augment import MultiCrop, MultiCropConfig, random_resized_crop, to_normalized_tensor
from model.train.copy_augment import CopyViews, crop, pad, perspective, screenshot_frame, sticker_overlay, text_overlay
from tests.support.photos import skimage_photo


def test_multicrop_shapes_and_determinism() -> None:
    img = skimage_photo("coffee")
    mc = MultiCrop(MultiCropConfig(global_size=56, local_size=28, n_local=3))
    a, b = mc(img, random.Random("s1")), mc(img, random.Random("s1"))
    assert [t.shape for t in a["global"]] == [(3, 56, 56)] * 2 and [t.shape for t in a["local"]] == [(3, 28, 28)] * 3
    assert all(torch.equal(x, y) for x, y in zip(a["global"] + a["local"], b["global"] + b["local"]))
    c = mc(img, random.Random("s2"))
    assert not torch.equal(a["global"][0], c["global"][0])


def test_random_resized_crop_respects_scale() -> None:
    img = skimage_photo("astronaut")
    out = random_resized_crop(img, 64, (0.05, 0.1), random.Random(0))
    assert out.size == (64, 64)


@pytest.mark.parametrize("edit", [crop, pad, perspective, screenshot_frame, sticker_overlay, text_overlay])
def test_copy_edits_change_pixels(edit) -> None:
    img = skimage_photo("chelsea")
    out = edit(img, random.Random(3))
    assert out.mode == "RGB"
    assert out.size != img.size or ImageChops.difference(out, img).getbbox() is not None


def test_copy_views_are_two_different_squares() -> None:
    views = CopyViews(70)(skimage_photo("rocket"), random.Random(1))["views"]
    assert len(views) == 2 and all(v.shape == (3, 70, 70) for v in views)
    assert not torch.equal(views[0], views[1])


def test_copy_reference_view_keeps_most_of_the_photo() -> None:
    """With reference_share=1 the first view is the lightly edited original: it stays far closer
    to the plain resized photo than the strongly edited second view does, over many draws."""
    img = skimage_photo("chelsea")
    views = CopyViews(56, reference_share=1.0)
    base = to_normalized_tensor(img.resize((56, 56)))
    ref_err, edit_err = [], []
    for seed in range(12):
        first, second = views(img, random.Random(seed))["views"]
        ref_err.append(float((first - base).abs().mean()))
        edit_err.append(float((second - base).abs().mean()))
    assert sum(ref_err) < 0.6 * sum(edit_err)
    with pytest.raises(ValueError, match="reference_share"):
        CopyViews(56, reference_share=1.5)
