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

# The package's public names are those of its three modules (each lists them in its ``__all__``).
from . import ilvr, known_region, text
from .ilvr import *  # noqa: F403
from .known_region import *  # noqa: F403
from .text import *  # noqa: F403

__all__ = [*known_region.__all__, *ilvr.__all__, *text.__all__]
