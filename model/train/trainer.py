"""The training loop: schedules, AdamW with layer-wise decay, EMA teacher, checkpoints and exact resume.

A run writes two files: ``OUT`` (a ``dinoseek-vit/1`` backbone checkpoint: the teacher's backbone,
which ``load_backbone`` reads) and ``OUT.state`` (everything needed to resume bit-exactly:
student, teacher, heads, optimiser, centres, RNG state and the step). Both are written atomically.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from model.arch import arch_by_name
from model.checkpoint import atomic_torch_save, load_backbone, save_checkpoint
from model.train.augment import MultiCrop, MultiCropConfig
from model.train.config import TrainConfig
from model.train.copy_augment import CopyViews
from model.train.copy_objective import CopyModel, collate_copy
from model.train.data import SampleStream, StepSampler, data_digest, list_images
from model.train.optim import backbone_param_groups, head_param_groups
from model.train.schedules import cosine_schedule, linear_warmup
from model.train.ssl import SSLModel, collate_multicrop
from model.vision_transformer import build_vit

log = logging.getLogger("dinoseek.train")
STATE_SUFFIX = ".state"
# Settings a resumed run may change without changing what it computes (steps extends the run).
_RESUME_MAY_CHANGE = ("steps", "num_workers", "checkpoint_every", "log_every")


@dataclass
class TrainResult:
    checkpoint: Path
    steps: int
    seconds: float
    images_seen: int
    skipped_files: list[str] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)


class CollapseGuard:
    """Warns loudly when the teacher collapses (uniform or single-prototype outputs, constant features)."""

    def __init__(self, patience: int = 50, start_step: int = 0) -> None:
        self.patience = patience
        self.start_step = start_step  # a fresh ViT's features are nearly constant until warm-up ends
        self.bad_steps = 0
        self.warned = False

    def check(self, step: int, parts: dict[str, float]) -> str | None:
        reasons = []
        if step < self.start_step:
            return None
        if "teacher_entropy" in parts and parts["teacher_entropy"] > 0.98 * parts["max_entropy"]:
            reasons.append(f"teacher entropy {parts['teacher_entropy']:.3f} ≈ ln K = {parts['max_entropy']:.3f} (uniform outputs)")
        if "teacher_batch_entropy" in parts and parts["teacher_batch_entropy"] < 0.1 * parts["max_entropy"]:
            reasons.append(f"batch-mean teacher entropy {parts['teacher_batch_entropy']:.3f} (one prototype for all)")
        if parts["feature_std"] < 1e-3:
            reasons.append(f"feature std {parts['feature_std']:.2e} (constant features)")
        self.bad_steps = self.bad_steps + 1 if reasons else 0
        if self.bad_steps >= self.patience and not self.warned:
            self.warned = True
            message = f"COLLAPSE WARNING at step {step}: " + "; ".join(reasons)
            log.warning(message)
            print(f"\n*** {message} ***", file=sys.stderr)
            return message
        return None


class Trainer:
    """One training run of ``cfg`` on the images under ``data_dir``, writing ``out``."""

    def __init__(self, cfg: TrainConfig, data_dir: str | Path, out: str | Path, init_from: str | None = None,
                 device: str = "cpu") -> None:
        self.cfg = cfg
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.out = Path(out)
        self.state_path = self.out.with_name(self.out.name + STATE_SUFFIX)
        self.device = torch.device(device)
        self.paths = list_images(self.data_dir)
        if len(self.paths) < cfg.batch_size:
            raise ValueError(f"{len(self.paths)} images under {self.data_dir}: fewer than one batch of {cfg.batch_size}")
        self.digest = data_digest(self.paths, self.data_dir)
        self.init_from = init_from
        torch.manual_seed(cfg.seed)
        if init_from:  # fine-tuning: the checkpoint's weights in a backbone with this run's drop path
            loaded = load_backbone(init_from)
            backbone = build_vit(loaded.arch, drop_path_rate=cfg.drop_path)
            backbone.load_state_dict(loaded.state_dict())
        else:
            backbone = build_vit(arch_by_name(cfg.arch), drop_path_rate=cfg.drop_path)
        self.model = (SSLModel if cfg.objective == "ssl" else CopyModel)(backbone, cfg).to(self.device)
        depth = len(backbone.blocks)
        groups = backbone_param_groups(self.model.student["backbone"], depth, cfg.layer_decay,
                                       cfg.patch_embed_lr_mult, cfg.frozen_blocks)
        for name, head in self.model.student.items():
            if name != "backbone":
                groups += head_param_groups(head, name)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))
        self.step = 0
        self.images_seen = 0
        self.skipped: list[str] = []
        self.history: list[dict[str, float]] = []
        self.guard = CollapseGuard(start_step=cfg.warmup_steps)

    # ------------------------------------------------------------- schedules
    def schedules(self, step: int) -> dict[str, float]:
        c = self.cfg
        return {
            "lr": cosine_schedule(step, c.steps, c.lr, c.min_lr, c.warmup_steps),
            "wd": cosine_schedule(step, c.steps, c.weight_decay, c.weight_decay_end),
            "momentum": cosine_schedule(step, c.steps, c.momentum_start, c.momentum_end),
            "teacher_temp": linear_warmup(step, c.warmup_teacher_temp_steps, c.warmup_teacher_temp, c.teacher_temp),
        }

    # ----------------------------------------------------------- checkpoints
    def save(self) -> None:
        """Write the backbone checkpoint and the resume state, each atomically."""
        train_info = {"config": self.cfg.to_dict(), "data_digest": self.digest, "data_files": len(self.paths),
                      "steps": self.step, "images_seen": self.images_seen, "init_from": self.init_from,
                      "skipped_files": len(self.skipped)}
        state = {
            "format": "dinoseek-train-state/1",
            "config": self.cfg.to_dict(),
            "data_digest": self.digest,
            "step": self.step,
            "images_seen": self.images_seen,
            "skipped": self.skipped,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
        }
        atomic_torch_save(state, self.state_path)
        save_checkpoint(self.model.export_backbone, self.out, train=train_info)

    def resume(self) -> None:
        """Continue from ``OUT.state``: refuses a state written for other settings or other data."""
        if not self.state_path.is_file():
            raise FileNotFoundError(f"cannot resume: {self.state_path} does not exist")
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        if state.get("format") != "dinoseek-train-state/1":
            raise ValueError(f"{self.state_path}: not a dinoseek training state")
        saved = TrainConfig.from_dict(state["config"])
        free = {k: getattr(self.cfg, k) for k in _RESUME_MAY_CHANGE}
        if saved.with_overrides(**free) != self.cfg:
            differ = [k for k, v in saved.to_dict().items() if v != self.cfg.to_dict()[k]]
            raise ValueError(f"{self.state_path}: written with different training settings "
                             f"({', '.join(differ)}); resume with the same ones")
        if state["data_digest"] != self.digest:
            raise ValueError(f"{self.state_path}: written for a different set of training images")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.images_seen = state["step"], state["images_seen"]
        self.skipped, self.history = list(state["skipped"]), list(state["history"])

    # ------------------------------------------------------------------ loop
    def _loader(self) -> torch.utils.data.DataLoader:
        c = self.cfg
        if c.objective == "ssl":
            transform = MultiCrop(MultiCropConfig(c.global_size, c.local_size, c.n_local, c.global_scale, c.local_scale))
            collate = collate_multicrop
        else:
            transform, collate = CopyViews(c.global_size, c.copy_reference_share), collate_copy
        per_epoch = (len(self.paths) // c.batch_size) * c.batch_size
        stream = SampleStream(self.paths, transform, c.seed, per_epoch, max_side=max(2 * c.global_size, 256))
        return torch.utils.data.DataLoader(
            stream, batch_sampler=StepSampler(c.batch_size, self.step, c.steps),
            collate_fn=partial(collate, cfg=c), num_workers=c.num_workers,
            # its own generator: seeding workers must not draw from the global RNG that drop path
            # uses, or a resumed run would diverge from an uninterrupted one
            generator=torch.Generator().manual_seed(c.seed),
        )

    def _apply_schedules(self, sched: dict[str, float]) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = sched["lr"] * group["lr_multiplier"]
            group["weight_decay"] = sched["wd"] * group["wd_multiplier"]

    def train_step(self, batch: dict) -> dict[str, float]:
        cfg = self.cfg
        sched = self.schedules(self.step)
        self._apply_schedules(sched)
        batch = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        self.model.train()
        if hasattr(self.model, "teacher"):
            self.model.teacher.eval()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            out = self.model(batch, sched["teacher_temp"])
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)) if cfg.clip_grad else 0.0
        if self.step < cfg.freeze_last_layer_steps:
            for group in self.optimizer.param_groups:
                if group["is_last_layer"]:
                    for p in group["params"]:
                        p.grad = None
        self.optimizer.step()
        if hasattr(self.model, "after_step"):
            self.model.after_step(sched["momentum"])
        return {"step": self.step, "loss": out.loss.item(), "grad_norm": grad_norm, **sched, **out.parts}

    def run(self, resume: bool = False, progress: bool = True, max_seconds: float | None = None,
            stop_at_step: int | None = None) -> TrainResult:
        """Train to ``cfg.steps`` (or until ``max_seconds`` / ``stop_at_step``), checkpointing every
        ``checkpoint_every`` steps and at the end; a stopped run continues with ``resume=True``."""
        if resume:
            self.resume()
        cfg = self.cfg
        start = time.perf_counter()
        seen_here = 0
        bar = None
        if progress:
            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr)
        try:
            for batch in self._loader():
                self.skipped.extend(e for e in batch["skipped"] if e not in self.skipped)
                if batch["n"] < 2:
                    self.step += 1
                    continue
                stats = self.train_step(batch)
                self.step += 1
                self.images_seen += batch["n"]
                seen_here += batch["n"]
                self.guard.check(self.step, stats)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self.history.append({k: round(v, 6) if isinstance(v, float) else v for k, v in stats.items()})
                if bar is not None:
                    elapsed = time.perf_counter() - start
                    health = {"H_t": f"{stats['teacher_entropy']:.2f}"} if "teacher_entropy" in stats else \
                        {"top1": f"{stats['batch_top1']:.2f}"}
                    bar.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{stats['lr']:.2e}",
                                    img_s=f"{seen_here / max(elapsed, 1e-9):.1f}", **health)
                    bar.update(1)
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
                if (max_seconds is not None and time.perf_counter() - start > max_seconds) or \
                        (stop_at_step is not None and self.step >= stop_at_step):
                    break
        finally:
            if bar is not None:
                bar.close()
        self.save()
        return TrainResult(self.out, self.step, time.perf_counter() - start, self.images_seen, self.skipped,
                           self.history)
