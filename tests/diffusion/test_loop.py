"""The one sampling loop and its hook points."""

import torch

from sindiffusion.diffusion import GaussianDiffusion, SamplingHook, make_betas, make_sampler, sample_loop


class Recorder(SamplingHook):
    def __init__(self, resample_at=None):
        self.calls = []
        self.resample_at = resample_at

    def start(self, x, t, ctx):
        self.calls.append(("start", t))
        return x

    def guidance(self, x_t, t, out, ctx):
        self.calls.append(("guidance", t))
        return None

    def after_step(self, x_prev, t_prev, out, ctx):
        self.calls.append(("after_step", t_prev))
        return x_prev

    def resample_count(self, t):
        return 2 if t == self.resample_at else 0

    def finish(self, x0, ctx):
        self.calls.append(("finish", None))
        return x0


def setup():
    d = GaussianDiffusion(make_betas("linear", 1000, 1e-4, 0.02))
    return d, make_sampler("ddim", d, 5)


def zero_model(x, t):
    return torch.zeros_like(x)


def test_hooks_called_in_order():
    d, s = setup()
    rec = Recorder()
    sample_loop(zero_model, d, s, (1, 3, 4, 4), hooks=[rec])
    ts = s.timesteps
    expected = [("start", ts[0])]
    for i, t in enumerate(ts):
        expected += [("guidance", t), ("after_step", ts[i + 1] if i + 1 < len(ts) else -1)]
    expected.append(("finish", None))
    assert rec.calls == expected


def test_resampling_repeats_a_step_and_calls_the_model_again():
    d, s = setup()
    calls = []

    def model(x, t):
        calls.append(int(t[0]))
        return torch.zeros_like(x)

    t_mid = s.timesteps[2]
    sample_loop(model, d, s, (1, 3, 4, 4), hooks=[Recorder(resample_at=t_mid)])
    assert calls.count(t_mid) == 3 and len(calls) == len(s.timesteps) + 2


def test_after_step_edits_are_kept_and_finish_is_last():
    d, s = setup()

    class Pin(SamplingHook):
        def after_step(self, x_prev, t_prev, out, ctx):
            x_prev[..., 0, 0] = 0.25
            return x_prev

        def finish(self, x0, ctx):
            return x0 * 0 + 0.5

    x = sample_loop(zero_model, d, s, (2, 3, 4, 4), hooks=[Pin()])
    assert torch.equal(x, torch.full_like(x, 0.5))


def test_guidance_shifts_the_ddpm_mean_by_variance_times_gradient():
    d = GaussianDiffusion(make_betas("linear", 1000, 1e-4, 0.02))
    ddpm = make_sampler("ddpm", d, 10)

    class Push(SamplingHook):
        needs_grad = True

        def guidance(self, x_t, t, out, ctx):
            assert x_t.requires_grad  # the loop hands hooks a differentiable x_t
            return torch.full_like(x_t, 50.0)

    base = sample_loop(zero_model, d, ddpm, (1, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    pushed = sample_loop(zero_model, d, ddpm, (1, 3, 4, 4), hooks=[Push()], generator=torch.Generator().manual_seed(0))
    assert (pushed - base).mean() > 0.1


def test_t_start_skips_the_early_steps():
    d, s = setup()
    seen = []
    sample_loop(
        lambda x, t: (seen.append(int(t[0])), torch.zeros_like(x))[1], d, s, (1, 3, 4, 4), t_start=s.timesteps[2]
    )
    assert seen == s.timesteps[2:]
