"""SinDiffusion: a denoising diffusion model learned from a single natural image.

The package is split into small modules with one job each:

- :mod:`sindiffusion.models` -- the patch-wise UNet (maps ``(x_t, t) -> eps``).
- :mod:`sindiffusion.diffusion` -- schedules, the model-free Gaussian diffusion,
  samplers and the one sampling loop with hooks.
- :mod:`sindiffusion.training` -- EMA and the trainer.
- :mod:`sindiffusion.applications` -- hooks for text guidance, outpainting, ILVR ...
- :mod:`sindiffusion.evaluation` -- SIFID, LPIPS diversity and weight-free metrics.
- :mod:`sindiffusion.stages` -- the thin command-line stages used by Snakemake and DVC.
"""

__version__ = "0.1.0"
