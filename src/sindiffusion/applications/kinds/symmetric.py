"""``symmetric``: samples that are mirror-symmetric (left-right or top-bottom).

At every step one half of the sample is replaced by the mirror image of the other half. It is a
copy, not an average, so every pixel keeps the noise level the sampler expects; the model
repairs the seam on the axis at the following steps, and the final image is exactly symmetric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from ...config import opt
from ...diffusion import ModelOutput, SamplingContext, SamplingHook
from ..base import APPLICATIONS, Application, PreparedEdit
from ..config import EditOptions, SizeOptions


def mirror(x: torch.Tensor, axis: str) -> torch.Tensor:
    """``[B, C, H, W]`` -> the same with the right (``vertical`` axis) or bottom (``horizontal``) half
    replaced by the mirrored left / top half."""
    dim = -1 if axis == "vertical" else -2
    n = x.shape[dim]
    first = x.narrow(dim, 0, (n + 1) // 2)
    return torch.cat([first, first.narrow(dim, 0, n // 2).flip(dim)], dim=dim)


class MirrorHook(SamplingHook):
    """Makes every intermediate sample (and the result) symmetric about ``axis``."""

    def __init__(self, axis: str) -> None:
        self.axis = axis

    def start(self, x: torch.Tensor, t: int, ctx: SamplingContext) -> torch.Tensor:
        return mirror(x, self.axis)

    def after_step(self, x_prev: torch.Tensor, t_prev: int, out: ModelOutput, ctx: SamplingContext) -> torch.Tensor:
        return mirror(x_prev, self.axis)


@dataclass(frozen=True, kw_only=True)
class SymmetricOptions(SizeOptions, EditOptions):
    EXAMPLE: ClassVar[dict[str, Any]] = {}
    axis: Literal["vertical", "horizontal"] = opt(
        "vertical", help="vertical: mirror left-right (an axis down the middle); horizontal: top-bottom"
    )


@APPLICATIONS.register("symmetric")
class Symmetric(Application):
    name = "symmetric"
    help = "mirror-symmetric samples (left-right or top-bottom, --axis)"
    hooks_doc = "`MirrorHook`: one half is the mirror of the other at every step"
    Options = SymmetricOptions

    def hooks(self, prep: PreparedEdit, num_timesteps: int) -> list[SamplingHook]:
        return [MirrorHook(prep.spec["axis"])]

    def metrics(
        self, prep: PreparedEdit, samples: torch.Tensor, bundle: Any
    ) -> tuple[dict[str, float], dict[str, list[float]]]:
        metrics, per_sample = super().metrics(prep, samples, bundle)
        metrics["asymmetry_max_abs"] = float((samples - mirror(samples, prep.spec["axis"])).abs().max())
        return metrics, per_sample
