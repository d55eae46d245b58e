"""The patch-wise UNet: architecture as the official code configures it, any input size."""

import dataclasses

import pytest
import torch

from sindiffusion.models import PRESETS, UNet, UNetConfig, count_parameters
from tests.tiny import TINY_UNET

TINY = TINY_UNET


def test_paper_preset_matches_official_parameter_count():
    # The official SinDiffusion UNet (guided-diffusion, 64/128/256, 1 res block, no attention) has
    # 6,992,899 parameters (the paper's "6.99 M").
    assert count_parameters(UNet(PRESETS["paper"])) == 6_992_899


def test_enhanced_preset_is_deeper_and_wider():
    cfg = PRESETS["enhanced"]
    assert cfg.channel_mult == (1, 2, 4, 8) and cfg.encoder_blocks == 2 and cfg.decoder_blocks == 3
    assert count_parameters(UNet(cfg)) > 5 * count_parameters(UNet(PRESETS["paper"]))


def test_output_is_zero_at_initialisation():
    torch.manual_seed(0)
    out = UNet(TINY)(torch.randn(2, 3, 16, 16), torch.tensor([0, 999]))
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("size", [(16, 16), (17, 23), (9, 40), (3, 5)])
def test_any_input_size(size):
    torch.manual_seed(0)
    model = UNet(TINY)
    for p in model.parameters():  # make the output depend on the input
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 3, *size)
    out = model(x, torch.tensor([10, 500]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])


def test_time_conditioning_changes_output():
    torch.manual_seed(0)
    model = UNet(TINY)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(1, 3, 16, 16)
    assert not torch.allclose(model(x, torch.tensor([1])), model(x, torch.tensor([900])))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(decoder_blocks=1), "decoder_blocks"),
        (dict(groups=5), "groups"),
        (dict(channel_mult=()), "channel_mult"),
        (dict(encoder_blocks=0), "encoder_blocks"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_invalid_configs_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**kwargs)


def test_grad_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    a = UNet(TINY)
    for p in a.parameters():
        torch.nn.init.normal_(p, std=0.1)
    b = UNet(dataclasses.replace(TINY, grad_checkpointing=True))
    b.load_state_dict(a.state_dict())
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 7])
    for m in (a, b):
        m.train()
        m(x, t).square().mean().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-6), n
