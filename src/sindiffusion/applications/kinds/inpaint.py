"""``inpaint``: regenerate the masked region of an image; the rest stays exact."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from ...config import opt
from ..base import APPLICATIONS, EditContext, PreparedEdit, read_mask
from ..config import EditOptions, ResampleOptions
from ._known import KnownRegionApplication


@dataclass(frozen=True, kw_only=True)
class InpaintOptions(ResampleOptions, EditOptions):
    EXAMPLE: ClassVar[dict[str, Any]] = {"mask": "m.png"}
    mask: str = opt(min_len=1, help="mask file, white = region to regenerate")
    input: Optional[str] = opt(None, min_len=1, help="image to fill (default: the training image)")
    invert_mask: bool = opt(False, help="black = region to regenerate")


@APPLICATIONS.register("inpaint")
class Inpaint(KnownRegionApplication):
    name = "inpaint"
    help = "regenerate the masked region of an image (eq. 6)"
    Options = InpaintOptions

    def prepare(self, prep: PreparedEdit, ctx: EditContext) -> None:
        image, path, native = self.load_input(prep, ctx)
        mask_path, prep.mask = read_mask(prep.spec, path, native, image)
        prep.files["mask"] = str(mask_path)
        prep.reference = image
        prep.size = (int(image.shape[-2]), int(image.shape[-1]))
