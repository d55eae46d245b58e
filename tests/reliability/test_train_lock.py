"""Two trainings of one image into one results folder at once (issue 28, item 9): the second is
refused (exit 2, naming the folder and the holder) while the first runs; a lock left by a killed
training is taken over without a word."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from sindiffusion.cli import main
from tests.reliability.test_preemption import LOSS, _rows, _start, _wait_until_step, preprocessed  # noqa: F401
from tests.tiny import one_torch_thread  # noqa: F401

TRAIN = Path("results/img/train")


def test_a_second_training_of_the_same_image_is_refused_while_the_first_runs(preprocessed, capfd):  # noqa: F811
    root = preprocessed
    first = _start(root)
    try:
        _wait_until_step(root, first, 2)
        capfd.readouterr()
        rc = main(["train", "--image", "img", "--no-progress", "--set", "train.steps=2"])
        err = capfd.readouterr().err
        assert rc == 2, err
        assert str(TRAIN) in err and f"pid {first.pid}" in err and socket.gethostname() in err, err
        _wait_until_step(root, first, int(_rows(root)[-1]["step"]) + 2)  # the first trains on, untouched
        steps = [int(r["step"]) for r in _rows(root)]
        assert steps == sorted(set(steps))
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.join(30)
    # the lock of the killed training is stale: the next training takes it over
    assert main(["train", "--image", "img", "--no-progress", "--set", "train.steps=2"]) == 0, capfd.readouterr().err


def test_a_lock_file_naming_a_gone_process_does_not_stop_a_training(preprocessed, capfd):  # noqa: F811
    lock = preprocessed / TRAIN / ".train.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"pid 4194303 on {socket.gethostname()} since 2020-01-01 00:00:00\n")
    assert main(["train", "--image", "img", "--no-progress", "--set", "train.steps=2"]) == 0, capfd.readouterr().err
    assert (preprocessed / TRAIN / "model.pt").is_file()
