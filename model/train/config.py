"""Training configuration and the named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in every checkpoint it writes."""

    arch: str = "vits14"
    objective: str = "ssl"  # "ssl": DINO + iBOT + KoLeo; "copy": copy-detection contrastive fine-tuning
    # data and crops
    global_size: int = 224
    local_size: int = 98
    n_local: int = 8
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    batch_size: int = 64
    steps: int = 10000
    num_workers: int = 2
    seed: int = 0
    # optimisation
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_steps: int = 1000
    weight_decay: float = 0.04
    weight_decay_end: float = 0.2
    layer_decay: float = 0.9
    patch_embed_lr_mult: float = 0.2
    clip_grad: float = 3.0
    drop_path: float = 0.1
    freeze_last_layer_steps: int = 1000
    frozen_blocks: int = 0
    # teacher
    momentum_start: float = 0.992
    momentum_end: float = 1.0
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_steps: int = 3000
    student_temp: float = 0.1
    centering: str = "sinkhorn"  # or "softmax"
    # heads and losses
    head_prototypes: int = 65536
    head_hidden: int = 2048
    head_bottleneck: int = 256
    head_layers: int = 3
    ibot_separate_head: bool = False
    mask_ratio: tuple[float, float] = (0.1, 0.5)
    mask_share: float = 0.5
    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    # copy objective
    copy_temperature: float = 0.05
    # SSCD uses 30; on 2-core CPU batches of 32 that drowned InfoNCE (training-batch top-1 stuck at
    # 0.1, benchmark flat from step 1,750 to 2,400), while 3 lifted recall@1 from 0.637 to 0.695.
    copy_entropy_weight: float = 3.0
    copy_pooling: str = "cls+gem"
    copy_reference_share: float = 0.5  # share of pairs whose first view is the lightly edited original
    # bookkeeping
    checkpoint_every: int = 500
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.objective not in ("ssl", "copy"):
            raise ValueError(f"objective must be 'ssl' or 'copy', got {self.objective!r}")
        if self.centering not in ("sinkhorn", "softmax"):
            raise ValueError(f"centering must be 'sinkhorn' or 'softmax', got {self.centering!r}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 (losses compare samples within a batch)")
        for name in ("global_size", "local_size"):
            if getattr(self, name) % 14:
                raise ValueError(f"{name} must be a multiple of the patch size 14, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)

    def with_settings(self, assignments: list[str]) -> "TrainConfig":
        """Apply ``KEY=VALUE`` strings (the CLI's ``--set``), each value parsed as the field's type."""
        known = {f.name: f for f in fields(self)}
        updates: dict[str, Any] = {}
        for item in assignments:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(known))}")
            current = getattr(self, key)
            try:
                if isinstance(current, bool):
                    if raw.lower() not in ("true", "false", "1", "0"):
                        raise ValueError(raw)
                    value: Any = raw.lower() in ("true", "1")
                elif isinstance(current, tuple):
                    value = tuple(type(current[0])(v) for v in raw.split(","))
                else:
                    value = type(current)(raw)
            except ValueError as exc:
                raise ValueError(f"--set {item!r}: {raw!r} is not a valid {type(current).__name__}") from exc
            updates[key] = value
        return replace(self, **updates)

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


PRESETS: dict[str, TrainConfig] = {
    # Trains on 2 CPU cores in tens of minutes: ViT-Tiny/14 on 112-px global and 56-px local crops.
    "cpu-tiny": TrainConfig(
        arch="vitt14", global_size=112, local_size=56, n_local=4, batch_size=32, steps=1500,
        num_workers=1, lr=1e-3, warmup_steps=150, freeze_last_layer_steps=150, warmup_teacher_temp_steps=300,
        drop_path=0.0, head_prototypes=4096, head_hidden=512, head_bottleneck=128,
        checkpoint_every=250, momentum_start=0.99,
    ),
    "gpu-small": TrainConfig(arch="vits14", batch_size=256, steps=50000, num_workers=8, lr=1e-3,
                             warmup_steps=5000, drop_path=0.1, freeze_last_layer_steps=1250,
                             warmup_teacher_temp_steps=15000),
    "gpu-base": TrainConfig(arch="vitb14", batch_size=256, steps=100000, num_workers=10, lr=7e-4,
                            warmup_steps=10000, drop_path=0.2, layer_decay=0.9, freeze_last_layer_steps=1250,
                            warmup_teacher_temp_steps=30000),
}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
