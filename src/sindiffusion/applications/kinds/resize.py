"""``resize``: any size / aspect (panoramas, retargeting), optionally keeping the layout (ILVR)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch.nn.functional as F

from ...config import opt
from ..base import APPLICATIONS, Application, EditContext, PreparedEdit, check_factor, sdedit_start
from ..config import STOP_AT_HELP, EditOptions, ManipulateError, SizeOptions


@dataclass(frozen=True, kw_only=True)
class ResizeOptions(SizeOptions, EditOptions):
    EXAMPLE: ClassVar[dict[str, Any]] = {"width": 200}
    scale_h: Optional[float] = opt(None, gt=0, help="height as a factor of the training image")
    scale_w: Optional[float] = opt(None, gt=0, help="width as a factor of the training image")
    factor: Optional[int] = opt(
        None, ge=1, help="optional: keep the layout of the resized training image (ILVR factor N)"
    )
    strength: Optional[float] = opt(
        None, gt=0, le=1, help="optional with factor: SDEdit start from the resized training image"
    )
    stop_at: float = opt(0.0, ge=0, le=1, help="with factor: " + STOP_AT_HELP)

    def check(self, where: Callable[[str], str]) -> None:
        if all(v is None for v in (self.height, self.width, self.scale_h, self.scale_w)):
            raise ManipulateError(f"{where('width')}: resize needs height/width (px) or scale_h/scale_w")
        for px, sc in (("height", "scale_h"), ("width", "scale_w")):
            if getattr(self, px) is not None and getattr(self, sc) is not None:
                raise ManipulateError(f"{where(sc)}: give {px} or {sc}, not both")
        if self.strength is not None and self.factor is None:
            raise ManipulateError(f"{where('strength')}: only used with factor (layout-preserving resize)")


@APPLICATIONS.register("resize")
class Resize(Application):
    name = "resize"
    help = "generate at any size / aspect (panoramas), optionally keeping the layout (--factor)"
    hooks_doc = "none (the UNet is fully convolutional), or `ILVRHook` on the resized training image to keep the layout"
    Options = ResizeOptions

    def prepare(self, prep: PreparedEdit, ctx: EditContext) -> None:
        o, where = prep.spec.options, prep.spec.where
        th, tw = ctx.bundle.train_size
        h = o.get("height") or round(th * (o.get("scale_h") or 1.0))
        w = o.get("width") or round(tw * (o.get("scale_w") or 1.0))
        if h < 8 or w < 8:
            raise ManipulateError(
                f"{where('scale_h' if h < 8 else 'scale_w')}: output size {h}x{w} is too small (minimum 8x8)"
            )
        prep.size = (int(h), int(w))
        if o.get("factor") is not None:
            image, _ = ctx.default_input(prep)
            prep.input = image
            prep.factor = int(o["factor"])
            check_factor(prep.spec, prep.factor, prep.size)
            prep.reference = F.interpolate(image, size=prep.size, mode="bicubic", align_corners=False).clamp(-1, 1)
            prep.t_start = sdedit_start(prep.spec, prep.sampler)
