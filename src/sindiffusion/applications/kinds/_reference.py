"""What paint, harmonize and edit share: an ILVR reference image (eq. 7) with an SDEdit start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ...config import opt
from ..base import (
    Application,
    EditContext,
    PreparedEdit,
    check_factor,
    read_image,
    read_mask,
    sdedit_start,
    to_tensor,
    working_size,
)
from ..config import EditOptions, MaskedILVROptions, SizeOptions


class ReferenceApplication(Application):
    """Condition on the low frequencies of an ``input`` image (in ``mask`` only, when the kind has one)."""

    hooks_doc = "`ILVRHook` (eq. 7) + SDEdit start"
    reference_alias = True

    def prepare(self, prep: PreparedEdit, ctx: EditContext) -> None:
        spec, o = prep.spec, prep.spec.options
        path, img = read_image(spec, "input")
        prep.files["input"] = str(path)
        native = (img.height, img.width)
        train = ctx.bundle.train_size
        size = working_size(native, train, o.get("height"), o.get("width"))
        if size != native:
            prep.notes.append(f"input {native[0]}x{native[1]} resized to {size[0]}x{size[1]}")
        aspect_in, aspect_train = native[1] / native[0], train[1] / train[0]
        if abs(aspect_in / aspect_train - 1) > 0.02 and o.get("height") is None and o.get("width") is None:
            prep.notes.append(
                f"input aspect {aspect_in:.3f} differs from the training image's {aspect_train:.3f}: "
                "kept the input's aspect at the training image's pixel area"
            )
        prep.input = prep.reference = to_tensor(img, size)
        prep.size = size
        prep.factor = int(o["factor"])
        check_factor(spec, prep.factor, size)
        if "mask" in o:
            mask_path, prep.mask = read_mask(spec, path, native, prep.reference)
            prep.files["mask"] = str(mask_path)
        prep.t_start = sdedit_start(spec, prep.sampler)


@dataclass(frozen=True, kw_only=True)
class MaskedReferenceOptions(SizeOptions, MaskedILVROptions, EditOptions):
    """The keys of ``harmonize`` (a pasted object in ``mask``) and ``edit`` (moved / copied regions in ``mask``)."""

    EXAMPLE: ClassVar[dict[str, Any]] = {"input": "c.png", "mask": "m.png"}
    input: str = opt(min_len=1, help="the reference: a naive composite (harmonize) or an edited image (edit)")
    mask: str = opt(min_len=1, help="mask file, white = the pasted object / edited region")
    invert_mask: bool = opt(False, help="black = the pasted object / edited region")
