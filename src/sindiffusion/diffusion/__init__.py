"""Model-free diffusion math, samplers and the one sampling loop."""

from .gaussian import GaussianDiffusion, ModelOutput
from .loop import SamplingContext, SamplingHook, sample_loop
from .samplers import SAMPLERS, Sampler, StepOutput, build_sampler, make_sampler, spaced_timesteps
from .schedule import make_betas, step_of_fraction
from .x0 import X0Clip, as_x0_clip

__all__ = [
    "GaussianDiffusion",
    "ModelOutput",
    "SamplingContext",
    "SamplingHook",
    "sample_loop",
    "SAMPLERS",
    "Sampler",
    "StepOutput",
    "build_sampler",
    "make_sampler",
    "spaced_timesteps",
    "make_betas",
    "step_of_fraction",
    "X0Clip",
    "as_x0_clip",
]
