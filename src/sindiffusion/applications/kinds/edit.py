"""``edit``: make a user edit (moved / copied regions, the mask) look natural."""

from __future__ import annotations

from ..base import APPLICATIONS
from ._reference import MaskedReferenceOptions, ReferenceApplication


@APPLICATIONS.register("edit")
class Edit(ReferenceApplication):
    name = "edit"
    help = "make a user edit (moved / copied regions) look natural (ILVR in a mask, eq. 7)"
    hooks_doc = "`ILVRHook` with a mask"
    Options = MaskedReferenceOptions
