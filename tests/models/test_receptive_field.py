"""Receptive field: analytic layer arithmetic vs. the empirical gradient footprint."""

import pytest

from sindiffusion.models import PRESETS, UNetConfig, analytic_receptive_field, measure_receptive_field


def test_paper_receptive_field_is_101_px():
    assert analytic_receptive_field(PRESETS["paper"]) == 101
    assert measure_receptive_field(PRESETS["paper"]) == 101


@pytest.mark.parametrize(
    "cfg",
    [
        UNetConfig(base_channels=8, channel_mult=(1, 2), groups=4),
        UNetConfig(base_channels=8, channel_mult=(1,), groups=4),
        UNetConfig(base_channels=8, channel_mult=(1, 2, 2), encoder_blocks=2, decoder_blocks=3, groups=4),
    ],
)
def test_measured_matches_analytic(cfg):
    assert measure_receptive_field(cfg) == analytic_receptive_field(cfg)


def test_receptive_field_grows_with_depth():
    small = UNetConfig(base_channels=8, channel_mult=(1, 2), groups=4)
    deep = UNetConfig(base_channels=8, channel_mult=(1, 2, 4), groups=4)
    assert analytic_receptive_field(deep) > analytic_receptive_field(small)


def test_enhanced_receptive_field_depends_on_pixel_parity():
    # Nearest upsampling makes the field of neighbouring pixels differ; the widest is reported.
    from sindiffusion.models.receptive_field import receptive_field_profile

    widths = set(receptive_field_profile(PRESETS["enhanced"])[600:1400].tolist())
    assert max(widths) == analytic_receptive_field(PRESETS["enhanced"]) and len(widths) > 1
