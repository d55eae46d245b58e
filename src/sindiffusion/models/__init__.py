"""The denoisers: the model-kind registry (:mod:`.kinds`), the patch-wise UNet and its receptive field,
the training-free patch denoiser.

Registration: importing a kind's module registers it in :data:`.kinds.MODEL_KINDS`. Every import of
``sindiffusion.models.<anything>`` runs this file first, which imports every ``*_kind`` module of this
package (in name order), so the kinds are always registered and adding one is adding its module;
``kinds.py`` itself imports none of them.
"""

import importlib
import pkgutil

from . import kinds  # noqa: F401  (the registry, before the kinds that fill it)
from .receptive_field import analytic_receptive_field, measure_receptive_field
from .unet import PRESETS, UNet, UNetConfig, count_parameters

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.endswith("_kind")):
    importlib.import_module(f"{__name__}.{_module}")  # registration

__all__ = ["PRESETS", "UNet", "UNetConfig", "count_parameters", "analytic_receptive_field", "measure_receptive_field"]
