"""``inpaint``: regenerate the masked region of an image; the rest stays exact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch

from ...config import opt
from ..base import APPLICATIONS, PreparedEdit, read_mask
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

    def known_region(
        self, prep: PreparedEdit, image: torch.Tensor, path: Path | None, native: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask_path, mask = read_mask(prep.spec, path, native, image)
        prep.files["mask"] = str(mask_path)
        return image, mask
