"""Training losses, one per module."""

from model.train.losses.centering import SoftmaxCenter, sinkhorn_knopp
from model.train.losses.copy_loss import CopyDetectionLoss
from model.train.losses.dino_loss import DINOLoss
from model.train.losses.ibot_loss import IBOTPatchLoss
from model.train.losses.koleo_loss import KoLeoLoss

__all__ = ["CopyDetectionLoss", "DINOLoss", "IBOTPatchLoss", "KoLeoLoss", "SoftmaxCenter", "sinkhorn_knopp"]
