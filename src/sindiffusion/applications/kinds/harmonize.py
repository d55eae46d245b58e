"""``harmonize``: blend a pasted object (the mask) of a composite into the image's style."""

from __future__ import annotations

from ..base import APPLICATIONS
from ._reference import MaskedReferenceOptions, ReferenceApplication


@APPLICATIONS.register("harmonize")
class Harmonize(ReferenceApplication):
    name = "harmonize"
    help = "blend a pasted object into the image's style (ILVR in a mask, eq. 7)"
    hooks_doc = "`ILVRHook` with a mask; background pasted back exactly"
    Options = MaskedReferenceOptions
