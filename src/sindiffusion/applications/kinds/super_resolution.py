"""``super_resolution``: upscale by an integer factor k (ILVR with N = k on the bicubic upsample)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F

from ...config import opt
from ..base import APPLICATIONS, Application, EditContext, PreparedEdit, check_factor
from ..config import STOP_AT_HELP, EditOptions


@dataclass(frozen=True, kw_only=True)
class SuperResolutionOptions(EditOptions):
    EXAMPLE: ClassVar[dict[str, Any]] = {"scale": 2}
    scale: int = opt(ge=2, help="integer upscaling factor k >= 2")
    input: Optional[str] = opt(
        None, min_len=1, help="low-resolution image, used at its own size (default: the training image)"
    )
    stop_at: float = opt(0.0, ge=0, le=1, help=STOP_AT_HELP)


@APPLICATIONS.register("super_resolution")
class SuperResolution(Application):
    name = "super_resolution"
    help = "upscale the training image (or --input) by an integer --scale (ILVR)"
    hooks_doc = "`ILVRHook`, N = k, bicubic-upsampled reference"
    Options = SuperResolutionOptions

    @classmethod
    def command(cls) -> str:
        return "super-resolve"

    def prepare(self, prep: PreparedEdit, ctx: EditContext) -> None:
        image, _ = ctx.default_input(prep)
        scale = int(prep.spec["scale"])
        h, w = image.shape[-2:]
        prep.input = image
        prep.size = (scale * h, scale * w)
        prep.factor = scale
        check_factor(prep.spec, scale, prep.size, key="scale")
        prep.reference = F.interpolate(image, size=prep.size, mode="bicubic", align_corners=False).clamp(-1, 1)

    def metrics(
        self, prep: PreparedEdit, samples: torch.Tensor, bundle: Any
    ) -> tuple[dict[str, float], dict[str, list[float]]]:
        metrics, per_sample = super().metrics(prep, samples, bundle)
        down = F.interpolate(
            samples, size=tuple(prep.input.shape[-2:]), mode="bicubic", align_corners=False, antialias=True
        )
        metrics["downsampled_l1"] = float((down - prep.input.cpu()).abs().mean())
        return metrics, per_sample
