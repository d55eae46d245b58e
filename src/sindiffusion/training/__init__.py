"""EMA, augmentation and the trainer."""

from .ema import EMA
from .trainer import Trainer

__all__ = ["EMA", "Trainer"]
