"""What every stage shares: its MLflow run's options, the model it reads (file or URI)."""

from __future__ import annotations

import contextlib

import pytest

from sindiffusion.config import Params
from sindiffusion.model_uri import ModelSource
from sindiffusion.stages import common


@pytest.mark.parametrize(
    "setting,slurm,on",
    [("auto", "1234", True), ("auto", None, False), (False, "1234", False), (True, None, True)],
)
def test_stage_runs_log_system_metrics_in_slurm_jobs_by_default(monkeypatch, setting, slurm, on):
    """tracking.system_metrics reaches the stage's run: ``auto`` means on in a Slurm job (the Slurm profile)."""
    seen = {}

    @contextlib.contextmanager
    def stage_run(stage, image, **options):
        seen.update(options)
        yield common.Tracker()

    monkeypatch.setattr(common, "stage_run", stage_run)
    if slurm:
        monkeypatch.setenv("SLURM_JOB_ID", slurm)
    else:
        monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    params = Params(raw={"tracking": {"system_metrics": setting}}, path="params.yaml")
    for stage in ("train", "sample"):
        seen.clear()
        with common.tracked(stage, "img", params, None, "note"):
            pass
        assert seen["system_metrics"] is on, stage


def test_model_source_is_a_file_or_a_uri_not_both(tmp_path):
    params = Params(raw={}, path="params.yaml")
    assert common.model_source(params, tmp_path / "m.pt", None) == ModelSource(tmp_path / "m.pt")
    assert common.model_source(params, tmp_path / "m.pt", None).label == str(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="give one of them, not both"):
        common.model_source(params, "m.pt", "models:/x@y")
    with pytest.raises(ValueError, match="no model given"):
        common.model_source(params, None, None)
