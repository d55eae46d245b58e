"""The patch-wise UNet denoiser and its receptive field."""

from .receptive_field import analytic_receptive_field, measure_receptive_field
from .unet import PRESETS, UNet, UNetConfig, count_parameters

__all__ = ["PRESETS", "UNet", "UNetConfig", "count_parameters", "analytic_receptive_field", "measure_receptive_field"]
