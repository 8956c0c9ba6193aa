"""The copy-detection fine-tuning objective: the backbone's own global descriptor, trained so that
strongly edited copies of a photo stay closer to each other than to any other photo."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.pooling import global_descriptor
from model.train.config import TrainConfig
from model.train.losses import CopyDetectionLoss
from model.train.ssl import LossOutput
from model.vision_transformer import DinoVisionTransformer


def collate_copy(items: list, cfg: TrainConfig) -> dict:
    """All first views, then all second views; ``ids`` says which views show the same photo."""
    good = [views for views, _, _ in items if views is not None]
    skipped = [err for views, _, err in items if views is None]
    if len(good) < 2:
        return {"n": 0, "skipped": skipped}
    views = torch.stack([v["views"][i] for i in range(2) for v in good])
    ids = torch.arange(len(good)).repeat(2)
    return {"n": len(good), "views": views, "ids": ids, "skipped": skipped}


class CopyModel(nn.Module):
    """A single backbone trained with InfoNCE + entropy on the descriptor the Embedder serves."""

    def __init__(self, backbone: DinoVisionTransformer, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.student = nn.ModuleDict({"backbone": backbone})
        self.loss = CopyDetectionLoss(cfg.copy_temperature, cfg.copy_entropy_weight)

    @property
    def export_backbone(self) -> DinoVisionTransformer:
        return self.student["backbone"]

    def forward(self, batch: dict, teacher_temp: float | None = None) -> LossOutput:
        feats = self.student["backbone"].forward_features(batch["views"])
        desc = global_descriptor(feats["x_norm_clstoken"], feats["x_norm_patchtokens"], self.cfg.copy_pooling)
        out = self.loss(desc, batch["ids"])
        with torch.no_grad():
            x = F.normalize(desc.float(), dim=-1)
            n = batch["n"]
            positive = (x[:n] * x[n:]).sum(-1).mean()
            sims = x[:n] @ x[n:].t()
            top1 = (sims.argmax(dim=1) == torch.arange(n, device=sims.device)).float().mean()
            parts = {"infonce": float(out["infonce"]), "entropy": float(out["entropy"]),
                     "positive_cosine": float(positive), "batch_top1": float(top1),
                     "feature_std": float(x.std(0).mean())}
        return LossOutput(out["loss"], parts)
