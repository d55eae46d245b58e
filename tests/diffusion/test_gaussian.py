"""The model-free Gaussian diffusion: schedule, forward process, posterior, eps <-> x0."""

import pytest
import torch

from sindiffusion.diffusion import GaussianDiffusion, make_betas


@pytest.fixture
def diffusion():
    return GaussianDiffusion(make_betas("linear", 1000, 1e-4, 0.02))


def test_linear_schedule_matches_ddpm():
    betas = make_betas("linear", 1000, 1e-4, 0.02)
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert (betas[1:] > betas[:-1]).all()


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        make_betas("quadratic", 10)


def test_q_sample_statistics(diffusion):
    torch.manual_seed(0)
    x0 = torch.full((4000, 1, 1, 1), 0.5)
    t = torch.full((4000,), 300)
    xt = diffusion.q_sample(x0, t, torch.randn_like(x0))
    abar = diffusion.alphas_cumprod[300].item()
    assert xt.mean().item() == pytest.approx(abar**0.5 * 0.5, abs=0.05)
    assert xt.var().item() == pytest.approx(1 - abar, rel=0.1)


def test_x0_eps_round_trip(diffusion):
    torch.manual_seed(0)
    x0, eps = torch.rand(2, 3, 8, 8) * 2 - 1, torch.randn(2, 3, 8, 8)
    t = torch.tensor([10, 700])
    xt = diffusion.q_sample(x0, t, eps)
    assert torch.allclose(diffusion.predict_x0_from_eps(xt, t, eps), x0, atol=1e-4)
    assert torch.allclose(diffusion.predict_eps_from_x0(xt, t, x0), eps, atol=1e-3)


@pytest.mark.parametrize("variance", ["fixed_large", "fixed_small"])
def test_output_from_eps_matches_closed_form_posterior(diffusion, variance):
    d = GaussianDiffusion(diffusion.betas, variance=variance)
    torch.manual_seed(0)
    x0, eps = torch.rand(1, 3, 4, 4) * 2 - 1, torch.randn(1, 3, 4, 4)
    for t in (1, 250, 999):
        tt = torch.tensor([t])
        xt = d.q_sample(x0, tt, eps)
        out = d.output_from_eps(xt, t, eps, clip_x0=False)
        # Ho et al. eq. (7), written out here as the independent reference
        abar, abar_prev, beta = d.abar(t), d.abar(t - 1), d.betas[t].item()
        mean = (beta * abar_prev**0.5 / (1 - abar)) * x0 + ((1 - abar_prev) * (1 - beta) ** 0.5 / (1 - abar)) * xt
        post_var = beta * (1 - abar_prev) / (1 - abar)
        assert torch.allclose(out.mean, mean, atol=1e-5)
        expected = beta if variance == "fixed_large" else post_var
        assert out.variance.flatten()[0].item() == pytest.approx(expected, rel=1e-6)


def test_clipping_keeps_eps_consistent(diffusion):
    x_t = torch.full((1, 3, 2, 2), 3.0)
    out = diffusion.output_from_eps(x_t, 5, torch.zeros_like(x_t), clip_x0=True)
    assert out.pred_x0.max() <= 1.0 and out.pred_x0_raw.max() > 1.0
    rebuilt = (x_t - (1 - diffusion.abar(5)) ** 0.5 * out.eps) / diffusion.abar(5) ** 0.5
    assert torch.allclose(rebuilt, out.pred_x0, atol=1e-5)


def test_training_loss_is_zero_for_the_true_noise(diffusion):
    x0, noise = torch.rand(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    loss = diffusion.training_loss(lambda x, t: noise, x0, torch.tensor([3, 900]), noise)
    assert loss.item() == 0.0
    assert diffusion.training_loss(lambda x, t: torch.zeros_like(x), x0, torch.tensor([3, 900]), noise).item() > 0.5


def test_invalid_betas_rejected():
    with pytest.raises(ValueError):
        GaussianDiffusion(torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="variance"):
        GaussianDiffusion(torch.tensor([0.1]), variance="learned")
