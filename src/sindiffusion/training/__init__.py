"""EMA, augmentation and the trainer."""

from .ema import EMA
from .trainer import Trainer, resolve_device

__all__ = ["EMA", "Trainer", "resolve_device"]
