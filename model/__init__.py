"""dinoseek's DINOv2 backbone: architecture, checkpoint I/O and batched embedding.

``model`` depends only on torch, numpy and PIL; it takes explicit arguments and never reads the
application settings.
"""

from model.arch import ARCHS, ViTArch, arch_by_name
from model.checkpoint import SHIPPED_WEIGHTS_DIR, CheckpointError, load_backbone, save_checkpoint
from model.embedder import Embedder, Embedding
from model.preprocess import ImageDecodeError, load_image
from model.vision_transformer import DinoVisionTransformer, build_vit

__all__ = [
    "ARCHS",
    "SHIPPED_WEIGHTS_DIR",
    "CheckpointError",
    "DinoVisionTransformer",
    "Embedder",
    "Embedding",
    "ImageDecodeError",
    "ViTArch",
    "arch_by_name",
    "build_vit",
    "load_backbone",
    "load_image",
    "save_checkpoint",
]
