"""The DINOv2 self-supervised objective: student/teacher backbones with DINO and iBOT heads.

Losses follow DINOv2: DINO cross-entropy from the teacher's (swapped) global views to every
student view, iBOT cross-entropy on masked patches of the global views, KoLeo on the student's
global CLS tokens. Teacher targets are Sinkhorn-Knopp or softmax centred.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass

import torch
from torch import nn

from model.train.config import TrainConfig
from model.train.ema import ema_update
from model.train.heads import DINOHead
from model.train.losses import DINOLoss, IBOTPatchLoss, KoLeoLoss, SoftmaxCenter, sinkhorn_knopp
from model.train.masking import batch_masks
from model.vision_transformer import DinoVisionTransformer


def collate_multicrop(items: list, cfg: TrainConfig) -> dict:
    """Stack views crop-major (all first global crops, then all second, ...) and draw iBOT masks."""
    good = [views for views, _, _ in items if views is not None]
    skipped = [err for views, _, err in items if views is None]
    if len(good) < 2:
        return {"n": 0, "skipped": skipped}
    first_k = items[0][1]
    b = len(good)
    global_crops = torch.stack([v["global"][i] for i in range(2) for v in good])
    local_crops = (torch.stack([v["local"][i] for i in range(cfg.n_local) for v in good])
                   if cfg.n_local else None)
    grid = (cfg.global_size // 14, cfg.global_size // 14)
    masks = batch_masks(2 * b, grid, cfg.mask_ratio, cfg.mask_share, random.Random(f"mask-{cfg.seed}-{first_k}"))
    return {"n": b, "global": global_crops, "local": local_crops, "masks": masks, "skipped": skipped}


@dataclass
class LossOutput:
    loss: torch.Tensor
    parts: dict[str, float]


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)


class SSLModel(nn.Module):
    """Student (trained) and teacher (EMA of the student) with their heads."""

    def __init__(self, backbone: DinoVisionTransformer, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = backbone.embed_dim

        def head() -> DINOHead:
            return DINOHead(dim, cfg.head_prototypes, cfg.head_hidden, cfg.head_bottleneck, cfg.head_layers)

        student = {"backbone": backbone, "dino_head": head()}
        if cfg.ibot_separate_head:
            student["ibot_head"] = head()
        self.student = nn.ModuleDict(student)
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.dino_loss = DINOLoss(cfg.student_temp)
        self.ibot_loss = IBOTPatchLoss(cfg.student_temp)
        self.koleo_loss = KoLeoLoss()
        if cfg.centering == "softmax":
            self.dino_center = SoftmaxCenter(cfg.head_prototypes)
            self.ibot_center = SoftmaxCenter(cfg.head_prototypes)

    @property
    def export_backbone(self) -> DinoVisionTransformer:
        """The backbone a checkpoint ships: the teacher's, as in DINOv2."""
        return self.teacher["backbone"]

    def after_step(self, momentum: float) -> None:
        """Move the teacher towards the student (EMA)."""
        ema_update(self.teacher, self.student, momentum)

    def _ibot_head(self, tower: nn.ModuleDict) -> nn.Module:
        return tower["ibot_head"] if "ibot_head" in tower else tower["dino_head"]

    def _targets(self, logits: torch.Tensor, temp: float, which: str) -> torch.Tensor:
        if self.cfg.centering == "sinkhorn":
            return sinkhorn_knopp(logits, temp)
        return (self.dino_center if which == "dino" else self.ibot_center)(logits, temp)

    def forward(self, batch: dict, teacher_temp: float) -> LossOutput:
        cfg = self.cfg
        b = batch["n"]
        global_crops, local_crops, masks = batch["global"], batch["local"], batch["masks"]
        masked_any = masks.any()

        with torch.no_grad():
            t_out = self.teacher["backbone"].forward_features(global_crops)
            t_cls = t_out["x_norm_clstoken"]
            t_cls = torch.cat((t_cls[b:], t_cls[:b]))  # each student global view learns from the other view
            t_cls_logits = self.teacher["dino_head"](t_cls)
            t_dino = self._targets(t_cls_logits, teacher_temp, "dino")
            if masked_any:
                t_patch = t_out["x_norm_patchtokens"][masks]
                t_ibot = self._targets(self._ibot_head(self.teacher)(t_patch), teacher_temp, "ibot")

        student = self.student["backbone"]
        global_masks = masks if masked_any else None
        if local_crops is not None:  # one packed pass on GPUs with xformers, two passes elsewhere
            s_global, s_local = student.forward_features_list([global_crops, local_crops], [global_masks, None])
        else:
            s_global = student.forward_features(global_crops, masks=global_masks)
        s_global_logits = self.student["dino_head"](s_global["x_norm_clstoken"])
        n_local_terms = 2 * cfg.n_local
        n_terms = 2 + n_local_terms  # 2 global pairs (swapped views) + every local view against 2 teachers
        dino_global = self.dino_loss([s_global_logits], [t_dino]) * 2 / n_terms
        dino_local = torch.zeros((), device=global_crops.device)
        if local_crops is not None:
            s_local_logits = self.student["dino_head"](s_local["x_norm_clstoken"])
            # every local view learns from both teacher global views (their order does not matter)
            dino_local = self.dino_loss(list(s_local_logits.chunk(cfg.n_local)), list(t_dino.chunk(2))) / n_terms
        koleo = sum(self.koleo_loss(p) for p in s_global["x_norm_clstoken"].chunk(2))
        ibot = torch.zeros((), device=global_crops.device)
        if masked_any:
            s_patch_logits = self._ibot_head(self.student)(s_global["x_norm_patchtokens"][masks])
            ibot = self.ibot_loss(s_patch_logits, t_ibot, masks) * 2  # two global views, as DINOv2 scales it

        loss = cfg.dino_weight * (dino_global + dino_local) + cfg.koleo_weight * koleo + cfg.ibot_weight * ibot
        with torch.no_grad():
            teacher_probs = torch.softmax(t_cls_logits.float() / teacher_temp, dim=-1)
            parts = {
                "dino_global": float(dino_global), "dino_local": float(dino_local),
                "ibot": float(ibot), "koleo": float(koleo),
                # collapse indicators: per-sample teacher entropy (ln K = uniform collapse, 0 = one-hot),
                # entropy of the batch-mean teacher distribution (low = everyone on one prototype),
                # and the spread of student features across the batch (0 = constant output).
                "teacher_entropy": float(_entropy(teacher_probs).mean()),
                "teacher_batch_entropy": float(_entropy(teacher_probs.mean(0))),
                "max_entropy": math.log(cfg.head_prototypes),
                "feature_std": float(nn.functional.normalize(s_global["x_norm_clstoken"], dim=-1).std(0).mean()),
            }
        return LossOutput(loss, parts)
