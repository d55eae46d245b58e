"""Research tools (studies), apart from the product: what the measurement pages of ``docs/results/`` were
made with. They run the pipeline's stages and library functions; nothing in the product imports them.

* :mod:`.time_curve` (``sindiffusion time-curve``): quality vs minutes of training;
* :mod:`.curve_compare` (``sindiffusion time-curve-compare``): time curves side by side;
* :mod:`.denoise_gap` (``sindiffusion denoise-gap``): a trained UNet vs the closed-form patch denoiser;
* :mod:`.rf_study` (``sindiffusion rf-study``): receptive field vs diversity / copying;
* :mod:`.speed` (``sindiffusion benchmark-speed``): training it/s and seconds per denoising step;
* :mod:`.seams` (``sindiffusion seam-jump``): how visible the ``tile`` start's seams are;
* :mod:`.gpu_check` (``python -m sindiffusion.cli.gpu_check``, run by ``scripts/gpu-check.sh``).

The one-command benchmark against the published samples is product: :mod:`sindiffusion.benchmark`.
"""
