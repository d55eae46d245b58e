"""Exponential moving average of model weights."""

from __future__ import annotations

import torch
import torch.nn as nn


def auto_decay(steps: int, half_life: float = 0.1) -> float:
    """The decay whose half-life is ``half_life * steps`` updates: decay ** (half_life * steps) = 1/2.

    E.g. 1200 steps, 10 % -> 0.99424; 50 000 steps -> 0.999861. Short runs then average over a
    window that matches their length instead of the random initialisation (0.9999 needs ~7000
    updates to forget it)."""
    n = max(1.0, half_life * steps)
    return 0.5 ** (1.0 / n)


class EMA:
    """``ema <- decay * ema + (1 - decay) * param`` after every optimiser step.

    With ``warmup`` the decay used at update ``n`` is ``min(decay, (1 + n) / (10 + n))`` so the
    average is not dominated by the random initialisation in short runs (off by default, as in
    the official code).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = False) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    def current_decay(self, num_updates: int) -> float:
        return min(self.decay, (1 + num_updates) / (10 + num_updates)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, num_updates: int) -> None:
        d = self.current_decay(num_updates)
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Take the averages of ``state``; its names and shapes must be the model's (RuntimeError
        naming the first that is not, as ``nn.Module.load_state_dict`` does), else the mismatch
        would surface only at the first update."""
        if set(state) != set(self.shadow):
            missing, unexpected = sorted(set(self.shadow) - set(state)), sorted(set(state) - set(self.shadow))
            raise RuntimeError(f"EMA state: missing keys {missing[:3]}, unexpected keys {unexpected[:3]}")
        for k, v in state.items():
            if tuple(v.shape) != tuple(self.shadow[k].shape):
                raise RuntimeError(
                    f"EMA state: size mismatch for {k}: {tuple(v.shape)} in the state, {tuple(self.shadow[k].shape)} "
                    "in the model"
                )
        self.shadow = {k: v.detach().clone().float() for k, v in state.items()}
