"""A short real training run on CPU: the loss falls, the checkpoint loads, resume is bit-exact."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

from model import load_backbone
from model.train.config import TrainConfig
from model.train.copy_augment import CopyViews
from model.train.copy_objective import collate_copy
from model.train.trainer import Trainer
from tests.support.photos import PHOTO_NAMES, skimage_photo

TINY = TrainConfig(
    arch="vitt14", global_size=56, local_size=28, n_local=2, batch_size=4, steps=12, num_workers=0,
    lr=2e-3, warmup_steps=2, freeze_last_layer_steps=2, warmup_teacher_temp_steps=4, head_prototypes=256,
    head_hidden=64, head_bottleneck=32, checkpoint_every=100, log_every=1, drop_path=0.1,
)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train_images")
    (folder / "nested").mkdir()
    for name in PHOTO_NAMES:
        img = skimage_photo(name)
        img.save(folder / f"{name}.jpg", quality=90)
        img.rotate(90, expand=True).save(folder / "nested" / f"{name}_rot.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return folder


def test_short_run_lowers_loss_and_writes_a_loadable_checkpoint(image_dir, tmp_path) -> None:
    out = tmp_path / "model.pt"
    result = Trainer(TINY, image_dir, out).run(progress=False)
    assert result.steps == 12 and len(result.history) == 12
    losses = [h["loss"] for h in result.history]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert any("corrupt.jpg" in s for s in result.skipped_files)  # skipped and counted, not fatal
    vit = load_backbone(out)
    raw = torch.load(out, weights_only=True)
    assert raw["train"]["steps"] == 12 and raw["train"]["data_files"] == 11 and len(raw["train"]["data_digest"]) == 64
    assert raw["train"]["config"]["arch"] == "vitt14"
    assert vit.arch.embed_dim == 192 and out.with_name("model.pt.state").is_file()


def test_resume_is_bit_exact(image_dir, tmp_path) -> None:
    cfg = TINY.with_overrides(steps=6)
    straight = Trainer(cfg, image_dir, tmp_path / "a.pt")
    straight.run(progress=False)
    first = Trainer(cfg, image_dir, tmp_path / "b.pt")
    first.run(progress=False, stop_at_step=3)
    assert torch.load(tmp_path / "b.pt.state", weights_only=True)["step"] == 3
    with pytest.raises(ValueError, match=r"different training settings \(lr\)"):
        Trainer(cfg.with_overrides(lr=1e-4), image_dir, tmp_path / "b.pt").resume()
    # a new process would start here; one data-loading worker this time: augmentation is per-sample
    # seeded, so the number of workers does not change the result
    resumed = Trainer(cfg.with_overrides(num_workers=1), image_dir, tmp_path / "b.pt")
    resumed.run(progress=False, resume=True)
    assert resumed.step == 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]


def test_resume_without_state_fails_clearly(image_dir, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Trainer(TINY, image_dir, tmp_path / "none.pt").run(progress=False, resume=True)


def test_fine_tune_from_checkpoint_with_frozen_blocks(image_dir, tmp_path) -> None:
    base = tmp_path / "base.pt"
    Trainer(TINY.with_overrides(steps=2), image_dir, base).run(progress=False)
    start = load_backbone(base)
    tuned = Trainer(TINY.with_overrides(steps=2, frozen_blocks=2), image_dir, tmp_path / "tuned.pt",
                    init_from=str(base))
    tuned.run(progress=False)
    student = tuned.model.student["backbone"]
    assert torch.equal(student.blocks[0].attn.qkv.weight, start.blocks[0].attn.qkv.weight)  # frozen
    assert not torch.equal(student.blocks[5].attn.qkv.weight, start.blocks[5].attn.qkv.weight)  # trained


def test_copy_objective_pulls_edited_views_together(image_dir, tmp_path) -> None:
    """Copy fine-tuning from an SSL checkpoint: the descriptor's InfoNCE falls and the result loads."""
    base = tmp_path / "ssl.pt"
    Trainer(TINY.with_overrides(steps=1), image_dir, base).run(progress=False)
    cfg = TINY.with_overrides(objective="copy", steps=12, lr=1e-3, warmup_steps=1, batch_size=8,
                              copy_entropy_weight=1.0)
    trainer = Trainer(cfg, image_dir, tmp_path / "copy.pt", init_from=str(base))
    # a fixed evaluation batch: the same edited views before and after training
    views = CopyViews(cfg.global_size)
    items = [(views(skimage_photo(name), random.Random(i)), i, name) for i, name in enumerate(PHOTO_NAMES)]
    batch = collate_copy(items, cfg)

    def infonce() -> float:
        trainer.model.eval()
        with torch.no_grad():
            return trainer.model(batch).parts["infonce"]

    before = infonce()
    result = trainer.run(progress=False)
    assert infonce() < before
    assert {"positive_cosine", "batch_top1", "entropy"} <= set(result.history[-1])
    assert load_backbone(tmp_path / "copy.pt").arch.embed_dim == 192


def test_cli_train_json(image_dir, tmp_path) -> None:
    out = tmp_path / "cli.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "dinoseek.cli", "train", "--data", str(image_dir), "--out", str(out),
         "--preset", "cpu-tiny", "--steps", "2", "--batch-size", "4", "--workers", "0", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["steps"] == 2 and summary["checkpoint"] == str(out)
    assert load_backbone(out).arch.embed_dim == 192
    bad = subprocess.run([sys.executable, "-m", "dinoseek.cli", "train", "--data", str(tmp_path / "nowhere"),
                          "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no such file or directory" in bad.stderr
