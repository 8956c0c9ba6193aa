"""The shipped default model: what it is, that every command gets it, and that it learned something."""

from __future__ import annotations

import random

import torch
from PIL import Image, ImageDraw, ImageOps

from model import Embedder, arch_by_name, build_vit, load_backbone
from model.checkpoint import DEFAULT_CHECKPOINT, read_train_record
from tests.support.photos import skimage_photo

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "camera",
          "coins", "retina", "colorwheel")


def _edits(img: Image.Image, rng: random.Random) -> list[Image.Image]:
    """Strong edits of the kinds the copy objective targets, made with other code than training's."""
    w, h = img.size
    x0, y0 = rng.randint(0, w // 3), rng.randint(0, h // 3)
    crop = img.crop((x0, y0, x0 + w // 2 + w // 6, y0 + h // 2 + h // 6))
    meme = img.copy()
    d = ImageDraw.Draw(meme)
    d.rectangle((0, 0, w, h // 6), fill=(255, 255, 255))
    d.rectangle((0, h - h // 6, w, h), fill=(0, 0, 0))
    framed = ImageOps.expand(img.resize((w // 2, h // 2)), border=(w // 5, h // 3, w // 5, h // 5), fill=(240, 240, 240))
    return [crop, meme, ImageOps.mirror(img), framed, img.rotate(15, expand=True), ImageOps.grayscale(img).convert("RGB")]


def _hits(embedder: Embedder, originals: list[Image.Image]) -> int:
    refs = embedder.embed(originals).vectors
    hits = 0
    for i, img in enumerate(originals):
        queries = embedder.embed(_edits(img, random.Random(i))).vectors
        hits += int(((queries @ refs.T).argmax(axis=1) == i).sum())
    return hits


def test_default_model_is_shipped_small_and_self_trained() -> None:
    assert DEFAULT_CHECKPOINT.is_file() and DEFAULT_CHECKPOINT.stat().st_size < 50 * 2**20
    vit = load_backbone(None)  # no path, no setting: the shipped model
    assert vit.checkpoint_path == str(DEFAULT_CHECKPOINT)
    assert vit.embed_defaults["image_size"] == 112 and vit.embed_defaults["pooling"] == "cls+gem"
    assert vit.embed_defaults["mirror_invariant"] is True and 0 < vit.embed_defaults["near_threshold"] < 1
    record = read_train_record(DEFAULT_CHECKPOINT)
    assert record["config"]["objective"] == "copy" and record["steps"] > 0  # trained here, by dinoseek train
    raw = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    assert all(t.dtype == torch.float16 for t in raw["state_dict"].values() if t.is_floating_point())


def test_default_model_finds_edited_copies_better_than_random_weights() -> None:
    originals = [skimage_photo(name) for name in PHOTOS]
    trained = _hits(Embedder(load_backbone(None)), originals)
    torch.manual_seed(0)
    random_vit = build_vit(arch_by_name("vitt14")).eval()
    untrained = _hits(Embedder(random_vit, image_size=112, pooling="cls+gem"), originals)
    total = len(originals) * 6
    # measured when shipped: 48/60 against 33/60 for random weights (crop, bars, mirror, frame, rotation, grey)
    assert trained >= 0.7 * total, f"default model found {trained}/{total}"
    assert trained - untrained >= 0.15 * total, f"default {trained} vs random {untrained} of {total}"
