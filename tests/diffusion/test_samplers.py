"""Samplers against an oracle denoiser whose data distribution is a single point."""

import pytest
import torch

from sindiffusion.diffusion import GaussianDiffusion, make_betas, make_sampler, sample_loop, spaced_timesteps

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


@pytest.mark.parametrize("name, steps", [("ddpm", 1000), ("ddpm", 50), ("ddim", 20)])
def test_samplers_recover_the_single_data_point(diffusion, name, steps):
    sampler = make_sampler(name, diffusion, steps, eta=0.0)
    x = sample_loop(oracle(diffusion), diffusion, sampler, (2, 3, 6, 5), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x, TARGET.expand(2, -1, -1, -1), atol=1e-3)


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
    assert not torch.equal(sampler.step(out, None, 10, 9, noise), out.mean)
    last = diffusion.output_from_eps(torch.zeros(1, 3, 2, 2), 0, torch.zeros(1, 3, 2, 2))
    assert torch.equal(sampler.step(last, None, 0, -1, noise), last.mean)


def test_unknown_sampler(diffusion):
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("euler", diffusion, 10)
