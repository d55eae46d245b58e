"""The denoisers: the model-kind registry (:mod:`.kinds`), the patch-wise UNet and its receptive field,
the training-free patch denoiser.

Registration: importing a kind's module registers it in :data:`.kinds.MODEL_KINDS`. Every import of
``sindiffusion.models.<anything>`` runs this file first, so the kinds below are always registered;
``kinds.py`` itself imports none of them (keep this list sorted).
"""

from . import kinds, patch_kind, unet_kind  # noqa: F401  (registration)
from .receptive_field import analytic_receptive_field, measure_receptive_field
from .unet import PRESETS, UNet, UNetConfig, count_parameters

__all__ = ["PRESETS", "UNet", "UNetConfig", "count_parameters", "analytic_receptive_field", "measure_receptive_field"]
