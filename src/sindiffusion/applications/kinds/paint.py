"""``paint``: turn a rough painting into a realistic image (ILVR + SDEdit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ...config import opt
from ..base import APPLICATIONS
from ..config import EditOptions, ILVROptions, SizeOptions
from ._reference import ReferenceApplication


@dataclass(frozen=True, kw_only=True)
class PaintOptions(SizeOptions, ILVROptions, EditOptions):
    EXAMPLE: ClassVar[dict[str, Any]] = {"input": "p.png"}
    input: str = opt(min_len=1, help="the rough painting")


@APPLICATIONS.register("paint")
class Paint(ReferenceApplication):
    name = "paint"
    help = "turn a rough painting into a realistic image (ILVR + SDEdit, eq. 7)"
    Options = PaintOptions
