"""A pretrained feature network used only for evaluation."""

from __future__ import annotations

import torch
from torch import nn


class FrozenNet(nn.Module):
    """Always in eval mode (BatchNorm running statistics, no dropout); ``device`` of its weights."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def train(self, mode: bool = True) -> "FrozenNet":
        return super().train(False)
