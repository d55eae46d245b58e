"""Training building blocks: the official random rescale, random crops, EMA."""

import torch

from sindiffusion.training.augment import random_crops, random_rescale
from sindiffusion.training.ema import EMA


def test_rescale_sizes_are_multiples_within_range():
    img = torch.rand(2, 3, 40, 60) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    sizes = set()
    for _ in range(30):
        out = random_rescale(img, 0.75, 1.25, 4, gen)
        h, w = out.shape[-2:]
        assert h % 4 == 0 and w % 4 == 0
        assert 0.75 * 40 - 4 <= h <= 1.25 * 40 and 0.75 * 60 - 4 <= w <= 1.25 * 60
        assert out.min() >= -1 and out.max() <= 1
        sizes.add((h, w))
    assert len(sizes) > 5  # H and W vary independently


def test_rescale_off_is_identity():
    img = torch.rand(1, 3, 8, 8)
    assert random_rescale(img, 1.0, 1.0, 4, torch.Generator()) is img


def test_crops_are_independent_per_sample():
    img = torch.arange(20 * 20, dtype=torch.float32).reshape(1, 1, 20, 20).expand(8, 1, 20, 20)
    out = random_crops(img, 8, torch.Generator().manual_seed(0))
    assert out.shape == (8, 1, 8, 8)
    assert len({float(o[0, 0, 0]) for o in out}) > 1


def test_ema_tracks_weights_and_warmup():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.9, warmup=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    before = ema.shadow["weight"].clone()
    ema.update(model, 1)
    assert torch.allclose(ema.shadow["weight"], 0.9 * before + 0.1)
    warm = EMA(model, decay=0.9999, warmup=True)
    assert warm.current_decay(0) < 0.2 and warm.current_decay(10**6) == 0.9999
