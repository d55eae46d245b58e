"""``outpaint``: extend the canvas on any side, or to a target size; the input stays exact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import torch

from ...config import opt
from ..base import APPLICATIONS, PreparedEdit
from ..config import EditOptions, ManipulateError, ResampleOptions, SizeOptions
from ..known_region import ANCHORS, outpaint_canvas, outpaint_to_size
from ._known import KnownRegionApplication


@dataclass(frozen=True, kw_only=True)
class OutpaintOptions(ResampleOptions, SizeOptions, EditOptions):
    EXAMPLE: ClassVar[dict[str, Any]] = {"right": 8}
    left: int = opt(0, ge=0, help="pixels to add on the left")
    right: int = opt(0, ge=0, help="pixels to add on the right")
    top: int = opt(0, ge=0, help="pixels to add on the top")
    bottom: int = opt(0, ge=0, help="pixels to add on the bottom")
    anchor: str = opt("center", choices=ANCHORS, help="where the image sits on a height x width canvas")
    input: Optional[str] = opt(None, min_len=1, help="image to extend (default: the training image)")

    def check(self, where: Callable[[str], str]) -> None:
        pads = any((self.left, self.right, self.top, self.bottom))
        by_size = self.height is not None or self.width is not None
        if by_size and pads:
            raise ManipulateError(f"{where('height')}: give either left/right/top/bottom or height/width, not both")
        if not by_size and not pads:
            raise ManipulateError(
                f"{where('right')}: outpainting needs left/right/top/bottom > 0 or a target height/width"
            )


@APPLICATIONS.register("outpaint")
class Outpaint(KnownRegionApplication):
    name = "outpaint"
    help = "extend the canvas on any side (eq. 6); the known region stays exactly the input"
    Options = OutpaintOptions

    def known_region(
        self, prep: PreparedEdit, image: torch.Tensor, path: Path | None, native: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        o, where = prep.spec.options, prep.spec.where
        if o.get("height") is None and o.get("width") is None:
            return outpaint_canvas(image, o["left"], o["right"], o["top"], o["bottom"])
        h, w = o.get("height") or image.shape[-2], o.get("width") or image.shape[-1]
        try:
            return outpaint_to_size(image, h, w, o["anchor"])
        except ValueError as err:
            raise ManipulateError(f"{where('height' if o.get('height') else 'width')}: {err}") from err
