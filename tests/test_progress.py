"""Plain progress lines for logs (--no-progress under Snakemake/Slurm)."""

import io

from sindiffusion.progress import ProgressLog, make_progress


def test_a_line_every_five_percent_and_at_the_end():
    buf = io.StringIO()
    log = ProgressLog("train", 200, stream=buf)
    for i in range(200):
        log.set_postfix(loss=f"{1 / (i + 1):.4f}")
        log.update(1)
    log.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 20
    assert lines[0].startswith("train: 10/200 (5%) loss 0.1000 | ") and "it/s" in lines[0]
    assert "elapsed 0:00:0" in lines[0] and "ETA " in lines[0]
    assert lines[-1].startswith("train: 200/200 (100%)") and lines[-1].endswith("ETA 0:00:00")


def test_resumed_and_stopped_early_runs():
    buf = io.StringIO()
    log = ProgressLog("sample", 100, initial=50, unit="step", stream=buf)
    for _ in range(12):
        log.update(1)
    log.close()  # stopped between two marks: one last line
    lines = buf.getvalue().splitlines()
    assert [ln.split(" |")[0] for ln in lines] == [
        "sample: 55/100 (55%)",
        "sample: 60/100 (60%)",
        "sample: 62/100 (62%)",
    ]
    assert "step/s" in lines[0]


def test_enabled_progress_is_a_tqdm_bar():
    from tqdm import tqdm

    bar = make_progress("x", 3, True)
    assert isinstance(bar, tqdm)
    bar.close()
    assert isinstance(make_progress("x", 3, False), ProgressLog)
