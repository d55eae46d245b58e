"""Model kind ``patch``: the training-free closed-form patch denoiser (:mod:`.patch`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..diffusion.gaussian import GaussianDiffusion
from .kinds import Geometry, ModelKind, register
from .patch import PatchConfig, PatchDenoiser


@register
class PatchKind(ModelKind):
    name = "patch"
    help = "training-free: the closed-form posterior mean over the image's patches, multi-scale (seconds, no training)"
    options = PatchConfig
    trainable = False

    def geometry(self, options: PatchConfig) -> Geometry:
        return Geometry(size_multiple=1, min_side=max((options.patch_size,) + options.sizes()))

    def receptive_field(self, options: PatchConfig, size: tuple[int, int]) -> int:
        # The coarsest scale's patch, measured in full-resolution pixels.
        sizes = options.pyramid_sizes(size)
        k = len(sizes) - 1
        return int(math.ceil(options.patch_size_at(k) * size[0] / sizes[k][0]))

    def build(self, options: PatchConfig, diffusion: GaussianDiffusion, image: torch.Tensor | None) -> nn.Module:
        if image is None:
            raise ValueError("model.kind=patch needs the training image to build its patch sets")
        if diffusion.parameterization != "eps":  # the closed form returns eps; v would be misread when sampling
            raise ValueError(
                f"diffusion.parameterization: model.kind=patch predicts eps, got {diffusion.parameterization!r}; "
                "set diffusion.parameterization: eps"
            )
        return PatchDenoiser(options, image, diffusion.alphas_cumprod)

    def from_checkpoint(self, ckpt: dict, state: dict[str, torch.Tensor], diffusion: GaussianDiffusion) -> nn.Module:
        # The checkpoint stores the training image itself: the model is rebuilt from it.
        options = self.options_from_stored(ckpt["config"]["model"])
        return PatchDenoiser(options, state["image"], diffusion.alphas_cumprod).eval()
