"""The receptive-field study (paper Table 4), at toy scale."""

from __future__ import annotations

import pytest

from tests.tiny import write_image


def test_rf_study_runs_and_plots(tmp_path):
    from sindiffusion.studies import rf_study

    img = write_image(tmp_path / "img.png", (32, 48), seed=3, texture="noise")
    result = rf_study.run_study(
        img,
        out=tmp_path / "rf",
        max_size=32,
        steps=3,
        num_samples=2,
        sample_steps=2,
        base_channels=8,
        batch_size=2,
        configs=[(1, 1, 2), (2, 1, 2)],
        device="cpu",
        progress=False,
    )
    rows = result["rows"]
    assert [r["rf_px"] for r in rows] == [17, 45]
    assert rows[0]["rf_fraction"] < rows[1]["rf_fraction"]
    assert all(isinstance(r[k], float) for r in rows for k in rf_study.METRICS)
    for key in ("csv", "json", "plot", "samples", "markdown"):
        assert (tmp_path / "rf" / result["files"][key].split("/")[-1]).is_file()
    assert rf_study.parse_config("3:1:2") == (3, 1, 2)
    with pytest.raises(ValueError):
        rf_study.parse_config("3-1")
