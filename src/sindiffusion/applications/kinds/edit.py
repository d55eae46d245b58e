"""``edit``: make a user edit (moved / copied regions, the mask) look natural."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import APPLICATIONS
from ._reference import MaskedReferenceOptions, ReferenceApplication


@dataclass(frozen=True, kw_only=True)
class EditEditOptions(MaskedReferenceOptions):
    """Make a user edit (moved / copied regions in ``mask``) look natural."""


@APPLICATIONS.register("edit")
class Edit(ReferenceApplication):
    name = "edit"
    help = "make a user edit (moved / copied regions) look natural (ILVR in a mask, eq. 7)"
    hooks_doc = "`ILVRHook` with a mask"
    Options = EditEditOptions
