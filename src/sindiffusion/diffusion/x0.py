"""What a sampling step does to the predicted clean image x0 (the "brightness drift" knob).

Modes (``sample.clip_x0`` / ``manipulate.clip_x0`` in params.yaml):

* ``false``     -- none: x0 is used as predicted.
* ``true``      -- clamp x0 to [-1, 1] at every step (the official SinDiffusion / DDPM sampler).
  At high noise the prediction is noisy; the clamp cuts one tail of it, which pulls dark or
  bright images towards grey.
* ``dynamic``   -- Imagen's dynamic thresholding (Saharia et al. 2022, sec. 2.3): per sample,
  s = max(1, the ``percentile`` quantile of |x0|); x0 <- clamp(x0, -s, s) / s.
* ``low_noise`` -- clamp as ``true``, but only at steps t < ``low_noise`` * T, where the prediction
  is already close to an image and the clamp only removes small overshoots.

The loop applies it in :meth:`GaussianDiffusion.output_from_eps`, independent of the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import torch

from ..validation import check_choice, check_range

#: the values ``clip_x0`` accepts in params.yaml
MODES = (False, True, "dynamic", "low_noise")


@dataclass(frozen=True)
class X0Clip:
    """How the predicted x0 is limited; see the module docstring.

    Attributes:
        mode: ``none``, ``clamp``, ``dynamic`` or ``low_noise``.
        percentile: quantile of |x0| used by ``dynamic`` (in (0, 1]).
        low_noise: fraction of T below which ``low_noise`` clamps (in (0, 1]).
    """

    mode: str = "clamp"
    percentile: float = 0.995
    low_noise: float = 0.2

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, ("none", "clamp", "dynamic", "low_noise"))
        check_range("percentile", self.percentile, 0.0, 1.0, low_open=True)
        check_range("low_noise", self.low_noise, 0.0, 1.0, low_open=True)

    @classmethod
    def from_option(cls, clip_x0: Union[bool, str], percentile: float = 0.995, low_noise: float = 0.2) -> "X0Clip":
        """From the params.yaml value (``false``/``true``/``dynamic``/``low_noise``)."""
        check_choice("clip_x0", clip_x0, MODES)
        mode = {False: "none", True: "clamp"}.get(clip_x0, clip_x0) if isinstance(clip_x0, bool) else clip_x0
        return cls(str(mode), percentile, low_noise)

    def active(self, t: int, num_timesteps: int) -> bool:
        """Whether step ``t`` changes x0 at all."""
        if self.mode == "none":
            return False
        if self.mode == "low_noise":
            return t < self.low_noise * num_timesteps
        return True

    def apply(self, pred_x0: torch.Tensor, t: int, num_timesteps: int) -> torch.Tensor:
        """``pred_x0: [B, C, H, W]`` -> the limited x0, same shape (the input when inactive)."""
        if not self.active(t, num_timesteps):
            return pred_x0
        if self.mode == "dynamic":
            flat = pred_x0.detach().abs().flatten(1).float()
            # = torch.quantile(..., interpolation="higher"), which refuses inputs over 2^24 elements
            k = math.ceil(self.percentile * (flat.shape[1] - 1)) + 1
            s = flat.kthvalue(k, dim=1).values.clamp(min=1.0).to(pred_x0.dtype)
            s = s.view(-1, *([1] * (pred_x0.dim() - 1)))
            return torch.maximum(torch.minimum(pred_x0, s), -s) / s
        return pred_x0.clamp(-1.0, 1.0)


X0ClipLike = Union[bool, X0Clip]


def check_x0_options(cfg: Any) -> None:
    """Load-time check of ``clip_x0``, ``clip_x0_percentile`` and ``clip_x0_low_noise`` on a config
    section (sample, manipulate); raises :class:`~sindiffusion.validation.FieldError`."""
    check_choice("clip_x0", cfg.clip_x0, MODES)
    check_range("clip_x0_percentile", cfg.clip_x0_percentile, 0.0, 1.0, low_open=True)
    check_range("clip_x0_low_noise", cfg.clip_x0_low_noise, 0.0, 1.0, low_open=True)


def x0_clip_of(cfg: Any) -> X0Clip:
    """The :class:`X0Clip` a (validated) sample/manipulate section asks for."""
    return X0Clip.from_option(cfg.clip_x0, cfg.clip_x0_percentile, cfg.clip_x0_low_noise)


def as_x0_clip(value: X0ClipLike) -> X0Clip:
    """``True``/``False`` (the historical bool) or an :class:`X0Clip`."""
    if isinstance(value, X0Clip):
        return value
    if isinstance(value, bool):
        return X0Clip("clamp" if value else "none")
    raise TypeError(f"clip_x0 must be a bool or an X0Clip, got {type(value).__name__}")
