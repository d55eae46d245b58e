"""The Gaussian diffusion process, independent of any network.

Notation follows Ho et al. (2020), "DDPM"; equation numbers refer to that paper.
Every method that needs the denoiser takes it as an argument ``model(x_t, t) -> eps``
with ``x_t: [B, C, H, W]`` in roughly [-1, 1] and ``t: [B]`` (int64).
Images live in [-1, 1].

A network may be trained to predict v = sqrt(abar) eps - sqrt(1 - abar) x0 instead of eps
(``parameterization="v"``, Salimans & Ho 2022); :meth:`GaussianDiffusion.eps_from_output` is the
one place that turns the network's output into eps, so samplers only ever see an eps-model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from .schedule import make_betas
from .x0 import X0ClipLike, as_x0_clip

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PARAMETERIZATIONS = ("eps", "v")
LOSS_WEIGHTINGS = ("none", "min_snr")


def _extract(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gather ``values[t]`` (float64 table ``[T]``) and shape it ``[B, 1, 1, 1]`` like ``like``."""
    out = values.to(device=t.device)[t].to(like.dtype)
    return out.reshape(t.shape[0], *([1] * (like.dim() - 1)))


@dataclass(frozen=True)
class ModelOutput:
    """The denoiser's prediction at one step, all tensors ``[B, C, H, W]``.

    ``mean``/``variance``/``log_variance`` describe p(x_{t-1} | x_t);
    ``pred_x0`` is the predicted clean image (clipped to [-1, 1] when asked),
    ``eps`` the predicted noise consistent with ``pred_x0``; ``pred_x0_raw`` the unclipped
    prediction (guidance differentiates through it: clipping would zero the gradient of every
    pixel outside [-1, 1], which at noisy steps is most of them).
    """

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor
    pred_x0: torch.Tensor
    eps: torch.Tensor
    pred_x0_raw: torch.Tensor

    def replace(self, **changes: torch.Tensor) -> "ModelOutput":
        return replace(self, **changes)


class GaussianDiffusion:
    """Forward process q and the reverse-process parameterisation for eps-prediction.

    Args:
        betas: float64 tensor ``[T]`` with 0 < beta_t < 1.
        parameterization: what the network predicts, ``"eps"`` or ``"v"`` (see the module docstring).
        variance: ``"fixed_large"`` (sigma^2 = beta_t, the official SinDiffusion choice) or
            ``"fixed_small"`` (sigma^2 = posterior variance beta~_t).
    """

    def __init__(self, betas: torch.Tensor, variance: str = "fixed_large", parameterization: str = "eps") -> None:
        betas = betas.to(torch.float64)
        if betas.dim() != 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
        if variance not in ("fixed_large", "fixed_small"):
            raise ValueError(f"variance must be 'fixed_large' or 'fixed_small', got {variance!r}")
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
        self.variance_type = variance
        self.parameterization = parameterization
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])
        alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / self.alphas_cumprod).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / self.alphas_cumprod - 1.0).sqrt()

    @classmethod
    def from_config(
        cls,
        schedule: str,
        num_timesteps: int,
        beta_start: float,
        beta_end: float,
        variance: str = "fixed_large",
        parameterization: str = "eps",
    ) -> "GaussianDiffusion":
        return cls(
            make_betas(schedule, num_timesteps, beta_start, beta_end),
            variance=variance,
            parameterization=parameterization,
        )

    # ------------------------------------------------------------------ parameterisation
    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t) at ``t: [B]`` -> ``[B]`` float64."""
        abar = self.alphas_cumprod.to(t.device)[t]
        return abar / (1.0 - abar)

    def eps_from_output(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's raw output -> predicted eps (``[B, C, H, W]``; ``t: [B]``).

        For v-prediction: eps = sqrt(abar) v + sqrt(1 - abar) x_t (substitute eq. 4 into v's definition).
        """
        if self.parameterization == "eps":
            return output
        return (
            _extract(self.sqrt_alphas_cumprod, t, x_t) * output
            + _extract(self.sqrt_one_minus_alphas_cumprod, t, x_t) * x_t
        )

    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output: eps, or v = sqrt(abar) eps - sqrt(1 - abar) x0."""
        if self.parameterization == "eps":
            return noise
        return (
            _extract(self.sqrt_alphas_cumprod, t, x0) * noise - _extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0
        )

    def loss_weights(self, t: torch.Tensor, weighting: str = "none", gamma: float = 5.0) -> torch.Tensor:
        """Per-sample loss weights ``[B]`` float32.

        ``min_snr`` (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting"): the
        x0-space weight min(SNR, gamma) expressed for the network's target, i.e. divided by SNR
        for eps-prediction and by SNR + 1 for v-prediction.
        """
        if weighting == "none":
            return torch.ones(t.shape[0], device=t.device)
        if weighting != "min_snr":
            raise ValueError(f"loss weighting must be one of {LOSS_WEIGHTINGS}, got {weighting!r}")
        snr = self.snr(t)
        denom = snr if self.parameterization == "eps" else snr + 1.0
        return (snr.clamp(max=gamma) / denom).float()

    # ------------------------------------------------------------------ forward process
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Eq. (4): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps. Shapes ``[B, C, H, W]``, ``t: [B]``."""
        return (
            _extract(self.sqrt_alphas_cumprod, t, x0) * x0 + _extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def q_sample_from(self, x_s: torch.Tensor, s: int, t: int, noise: torch.Tensor) -> torch.Tensor:
        """Diffuse an already noisy ``x_s`` further to step ``t > s``: q(x_t | x_s).

        ``s = -1`` means ``x_s`` is the clean image. Used by RePaint-style resampling.
        """
        abar_s = 1.0 if s < 0 else float(self.alphas_cumprod[s])
        ratio = float(self.alphas_cumprod[t]) / abar_s
        return ratio**0.5 * x_s + (1.0 - ratio) ** 0.5 * noise

    # ------------------------------------------------------------------ reverse process
    def predict_x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert eq. (4): x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        return (
            _extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
            - _extract(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps
        )

    def predict_eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return (_extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0) / _extract(
            self.sqrt_recipm1_alphas_cumprod, t, x_t
        )

    def abar(self, t: int) -> float:
        """alpha_bar at integer step ``t``; ``abar(-1) = 1`` (the clean image)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def output_from_eps(
        self, x_t: torch.Tensor, t: int, eps: torch.Tensor, t_prev: int | None = None, clip_x0: X0ClipLike = True
    ) -> ModelOutput:
        """Turn a predicted noise at step ``t`` into p(x_{t_prev} | x_t).

        ``t_prev`` defaults to ``t - 1``; a larger jump (respaced sampling) uses the same
        formulas with beta_eff = 1 - abar_t / abar_{t_prev} (improved-diffusion's respacing).
        ``clip_x0`` limits the predicted x0 (``True``: clamp to [-1, 1], the official default;
        ``False``: nothing; an :class:`~sindiffusion.diffusion.x0.X0Clip` for the other modes) and
        eps is recomputed from it so that the two stay consistent for DDIM.
        """
        clip = as_x0_clip(clip_x0)
        t_prev = t - 1 if t_prev is None else t_prev
        if not -1 <= t_prev < t < self.num_timesteps:
            raise ValueError(f"need -1 <= t_prev < t < T, got t={t}, t_prev={t_prev}")
        abar_t, abar_s = self.abar(t), self.abar(t_prev)
        # x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)   (eq. 4 inverted)
        pred_x0 = pred_x0_raw = (x_t - (1.0 - abar_t) ** 0.5 * eps) / abar_t**0.5
        if clip.active(t, self.num_timesteps):
            pred_x0 = clip.apply(pred_x0, t, self.num_timesteps)
            eps = (x_t - abar_t**0.5 * pred_x0) / (1.0 - abar_t) ** 0.5
        beta_eff = 1.0 - abar_t / abar_s
        # Eq. (7) with beta_eff: posterior mean and variance of q(x_s | x_t, x0).
        coef_x0 = abar_s**0.5 * beta_eff / (1.0 - abar_t)
        coef_xt = (1.0 - beta_eff) ** 0.5 * (1.0 - abar_s) / (1.0 - abar_t)
        mean = coef_x0 * pred_x0 + coef_xt * x_t
        posterior_var = beta_eff * (1.0 - abar_s) / (1.0 - abar_t)
        if self.variance_type == "fixed_large" and t_prev >= 0:
            var = beta_eff  # sigma^2 = beta (official SinDiffusion / DDPM "fixed large")
        else:
            var = posterior_var  # at the last step both choices give the clean mean
        var = max(var, 1e-20)
        variance = torch.full_like(x_t[:, :1, :1, :1], var)
        return ModelOutput(
            mean=mean, variance=variance, log_variance=variance.log(), pred_x0=pred_x0, eps=eps, pred_x0_raw=pred_x0_raw
        )

    def p_output(
        self, model: EpsModel, x_t: torch.Tensor, t: int, t_prev: int | None = None, clip_x0: X0ClipLike = True
    ) -> ModelOutput:
        """Run ``model`` at ``(x_t, t)`` (``t`` an int shared by the batch) -> :class:`ModelOutput`."""
        t_batch = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
        eps = model(x_t, t_batch).to(x_t.dtype)
        return self.output_from_eps(x_t, t, eps, t_prev=t_prev, clip_x0=clip_x0)

    # ------------------------------------------------------------------ training
    def training_loss(
        self,
        model: EpsModel,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        weighting: str = "none",
        gamma: float = 5.0,
    ) -> torch.Tensor:
        """Simple loss, eq. (14): mean over the batch of || target - net(x_t, t) ||^2 (a scalar, float32).

        ``model`` is the raw network (it outputs eps or v, see :meth:`target`); the squared error is
        computed in float32 whatever precision the network ran in, and weighted per sample by
        :meth:`loss_weights` (``weighting="none"``: all 1, the plain DDPM loss).
        """
        x_t = self.q_sample(x0, t, noise)
        out = model(x_t, t)
        per_sample = (out.float() - self.target(x0, t, noise).float()).pow(2).flatten(1).mean(1)
        return (per_sample * self.loss_weights(t, weighting, gamma).to(per_sample.device)).mean()
