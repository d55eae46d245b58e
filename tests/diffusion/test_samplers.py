"""Samplers against an oracle denoiser whose data distribution is a single point."""

import pytest
import torch

from sindiffusion.config import SamplingSettings
from sindiffusion.diffusion import (
    SAMPLERS,
    GaussianDiffusion,
    StepOutput,
    build_sampler,
    make_betas,
    make_sampler,
    sample_loop,
    spaced_timesteps,
)

TARGET = torch.linspace(-0.8, 0.8, 3 * 6 * 5).reshape(1, 3, 6, 5)


def oracle(diffusion):
    """eps_theta for data = {TARGET}: the exact noise that explains x_t."""

    def eps(x, t):
        abar = diffusion.alphas_cumprod[t].to(x.dtype).view(-1, 1, 1, 1)
        return (x - abar.sqrt() * TARGET) / (1 - abar).sqrt()

    return eps


@pytest.fixture
def diffusion():
    return GaussianDiffusion(make_betas("linear", 1000, 1e-4, 0.02))


def test_spaced_timesteps():
    assert spaced_timesteps(1000, 1000) == list(range(999, -1, -1))
    ts = spaced_timesteps(1000, 10)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 10 and ts == sorted(ts, reverse=True)
    with pytest.raises(ValueError, match="sampling steps"):
        spaced_timesteps(1000, 0)


class TestSamplerContract:
    """What every registered sampler must do (a new sampler module is tested here without a new test)."""

    @pytest.fixture(params=SAMPLERS.names())
    def name(self, request):
        return request.param

    @pytest.mark.parametrize("steps", [1000, 20])
    def test_recovers_the_single_data_point(self, diffusion, name, steps):
        sampler = make_sampler(name, diffusion, steps, eta=0.0)
        x = sample_loop(oracle(diffusion), diffusion, sampler, (2, 3, 6, 5), generator=torch.Generator().manual_seed(0))
        assert torch.allclose(x, TARGET.expand(2, -1, -1, -1), atol=1e-3)

    def test_built_from_settings_with_its_timesteps(self, diffusion, name):
        sampler = build_sampler(SamplingSettings(sampler=name, steps=7, eta=0.5), diffusion)
        assert sampler.timesteps == spaced_timesteps(1000, 7) and sampler.visited(500) == [
            t for t in sampler.timesteps if t <= 500
        ]
        assert all(getattr(sampler, k) == 0.5 for k in type(sampler).options)
        sampler.set_timesteps(3)
        assert sampler.timesteps == [999, 500, 0] and sampler.prev_timestep(500) == 0

    def test_step_returns_prev_sample_and_pred_x0(self, diffusion, name):
        sampler = make_sampler(name, diffusion, 10, eta=1.0)
        x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
        t, t_prev = sampler.timesteps[3], sampler.timesteps[4]
        out = diffusion.output_from_eps(x, t, torch.zeros_like(x), t_prev)
        step = sampler.step(out, x, t, t_prev, torch.randn_like(x))
        assert isinstance(step, StepOutput) and step.prev_sample.shape == x.shape
        assert torch.equal(step.pred_x0, out.pred_x0) and torch.isfinite(step.prev_sample).all()

    def test_guidance_moves_the_sample_towards_the_gradient(self, diffusion, name):
        sampler = make_sampler(name, diffusion, 10, eta=0.0)
        x = torch.zeros(1, 3, 4, 4)
        t, t_prev = sampler.timesteps[5], sampler.timesteps[6]
        out = diffusion.output_from_eps(x, t, torch.zeros_like(x), t_prev)
        grad = torch.ones_like(x)
        plain = sampler.step(out, x, t, t_prev, torch.zeros_like(x)).prev_sample
        guided = sampler.step(sampler.guide(out, x, t, t_prev, grad), x, t, t_prev, torch.zeros_like(x)).prev_sample
        assert (guided - plain).mean() > 0


def test_euler_ancestral_without_noise_is_ddim_eta0(diffusion):
    """With eta = 0 the Euler step on x / sqrt(abar) along d = eps is exactly DDIM's deterministic step."""
    torch.manual_seed(0)
    w = torch.randn(3, 3, 1, 1) * 0.3
    model = lambda x, t: torch.nn.functional.conv2d(x, w)  # noqa: E731
    runs = [
        sample_loop(
            model,
            diffusion,
            make_sampler(n, diffusion, 10, eta=0.0),
            (1, 3, 4, 4),
            generator=torch.Generator().manual_seed(1),
        )
        for n in ("ddim", "euler_ancestral")
    ]
    assert torch.allclose(runs[0], runs[1], atol=1e-5)
    noisy = sample_loop(
        model,
        diffusion,
        make_sampler("euler_ancestral", diffusion, 10, eta=1.0),
        (1, 3, 4, 4),
        generator=torch.Generator().manual_seed(1),
    )
    assert not torch.allclose(noisy, runs[1], atol=1e-3)


def test_ddim_eta0_is_deterministic_and_seed_independent(diffusion):
    torch.manual_seed(0)
    w = torch.randn(3, 3, 1, 1) * 0.3
    model = lambda x, t: torch.nn.functional.conv2d(x, w)  # noqa: E731  any smooth eps model
    sampler = make_sampler("ddim", diffusion, 10, eta=0.0)
    a = sample_loop(model, diffusion, sampler, (1, 3, 4, 4), generator=torch.Generator().manual_seed(1))
    b = sample_loop(model, diffusion, sampler, (1, 3, 4, 4), generator=torch.Generator().manual_seed(1))
    c = sample_loop(model, diffusion, sampler, (1, 3, 4, 4), generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ddpm_adds_noise_except_at_the_last_step(diffusion):
    sampler = make_sampler("ddpm", diffusion, 1000)
    out = diffusion.output_from_eps(torch.zeros(1, 3, 2, 2), 10, torch.zeros(1, 3, 2, 2))
    noise = torch.ones(1, 3, 2, 2)
    assert not torch.equal(sampler.step(out, None, 10, 9, noise).prev_sample, out.mean)
    last = diffusion.output_from_eps(torch.zeros(1, 3, 2, 2), 0, torch.zeros(1, 3, 2, 2))
    assert torch.equal(sampler.step(last, None, 0, -1, noise).prev_sample, last.mean)


def test_unknown_sampler(diffusion):
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("euler", diffusion, 10)
