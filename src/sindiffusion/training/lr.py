"""Learning-rate schedule: linear warm-up, then constant or cosine decay (``train.lr_*``)."""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int = 0, schedule: str = "constant") -> float:
    """Multiplier of ``train.lr`` for the update made after ``step`` completed steps (0-based).

    Warm-up: (step + 1) / warmup for the first ``warmup`` updates. Then ``constant`` (1) or
    ``cosine``: 0.5 (1 + cos(pi * p)) with p the fraction of the post-warm-up steps done, reaching 0
    at ``total`` (and staying there if training runs longer). Depends on the step only, so a
    resumed run follows the same curve without saving scheduler state.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        p = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {schedule!r}")
