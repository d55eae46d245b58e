"""Applications of SinDiffusion (paper section 4.4): each one is sampling-loop hooks.

Every application builds :class:`~sindiffusion.diffusion.SamplingHook` objects and calls the
one :func:`~sindiffusion.diffusion.sample_loop`; none has its own loop.

* :mod:`.known_region` -- outpainting / inpainting, SinDiffusion eq. (6), optional RePaint resampling.
* :mod:`.ilvr` -- ILVR low-frequency conditioning, SinDiffusion eq. (7): paint-to-image,
  harmonization, editing (with SDEdit start and masks) and super-resolution.
* :mod:`.text` -- CLIP text guidance, SinDiffusion eq. (5).

Conventions: images ``[B, 3, H, W]`` float in [-1, 1]; masks ``[1 or B, 1, H, W]`` float in
{0, 1} with **1 = region to generate / change** and 0 = region kept from the input.
"""

from .ilvr import (
    ILVRHook,
    LowPass,
    composite,
    ilvr_sample,
    ilvr_sdedit,
    sdedit_timestep,
    super_resolve,
)
from .known_region import (
    ANCHORS,
    KnownRegionHook,
    fill_masked_region,
    load_mask,
    noised_reference,
    outpaint_canvas,
    outpaint_to_size,
    paste_known,
    validate_mask,
)
from .text import (
    CLIPGuidanceHook,
    CLIPNormalize,
    MissingCLIPWeightsError,
    clip_score,
    encode_text,
    load_clip,
    make_cutouts,
)

__all__ = [
    # known region (eq. 6)
    "ANCHORS",
    "KnownRegionHook",
    "fill_masked_region",
    "load_mask",
    "noised_reference",
    "outpaint_canvas",
    "outpaint_to_size",
    "paste_known",
    "validate_mask",
    # ILVR (eq. 7)
    "ILVRHook",
    "LowPass",
    "composite",
    "ilvr_sample",
    "ilvr_sdedit",
    "sdedit_timestep",
    "super_resolve",
    # text (eq. 5)
    "CLIPGuidanceHook",
    "CLIPNormalize",
    "MissingCLIPWeightsError",
    "clip_score",
    "encode_text",
    "load_clip",
    "make_cutouts",
]
