"""The README's Python API example runs (on a tiny, briefly trained model, so it cannot rot)."""

import re
from pathlib import Path

import torch

from sindiffusion.checkpoint import save_checkpoint
from sindiffusion.config import DiffusionConfig, TrainConfig
from sindiffusion.data import save_image
from sindiffusion.models.unet_kind import UNetOptions
from sindiffusion.training import Trainer

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch, tiny_unet):
    monkeypatch.chdir(tmp_path)
    image = torch.rand(3, 24, 32) * 2 - 1
    save_image(image, "results/hubble/preprocess/image.png")
    trainer = Trainer(
        image,
        UNetOptions.of(tiny_unet),
        DiffusionConfig(),
        TrainConfig(steps=2, batch_size=2, crop_size=None, device="cpu"),
        {"name": "hubble", "size": [24, 32]},
        torch.device("cpu"),
    )
    trainer.train_step()
    save_checkpoint("results/hubble/train/model.pt", trainer.state_dict())

    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    block = block.replace("steps=100", "steps=3").replace("size=(112, 256)", "size=(24, 40)")
    exec(compile(block, "README.md", "exec"), {})
    assert Path("wide.png").is_file() and Path("outpainted.png").is_file()
