"""What outpainting and inpainting share: the known-region hook (SinDiffusion eq. 6) on an input image."""

from __future__ import annotations

from pathlib import Path

import torch

from ...data.io import load_image
from ...diffusion import SamplingHook
from ..base import Application, EditContext, PreparedEdit, to_tensor, working_size
from ..known_region import KnownRegionHook


class KnownRegionApplication(Application):
    """The result equals ``prep.reference`` wherever ``prep.mask`` is 0, exactly."""

    hooks_doc = "`KnownRegionHook` (eq. 6), optional RePaint resampling"

    def load_input(self, prep: PreparedEdit, ctx: EditContext) -> tuple[torch.Tensor, Path | None, tuple[int, int]]:
        """``(image [1, 3, H, W], path or None, native (h, w))``; an input file is used at its working size."""
        image, path = ctx.default_input(prep)
        native = (int(image.shape[-2]), int(image.shape[-1]))
        if path is not None:
            size = working_size(native, ctx.bundle.train_size)
            image = to_tensor(load_image(path), size)
            if size != native:
                prep.notes.append(f"input {native[0]}x{native[1]} resized to {size[0]}x{size[1]}")
        prep.input = image
        return image, path, native

    def prepare(self, prep: PreparedEdit, ctx: EditContext) -> None:
        image, path, native = self.load_input(prep, ctx)
        prep.reference, prep.mask = self.known_region(prep, image, path, native)
        prep.size = (int(prep.reference.shape[-2]), int(prep.reference.shape[-1]))

    def known_region(
        self, prep: PreparedEdit, image: torch.Tensor, path: Path | None, native: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reference [1, 3, H, W] in [-1, 1], mask [1, 1, H, W], 1 = generate)`` of the edit, from its
        input ``image`` at working size (``path``: its file, or None for the training image; ``native``:
        its size in the file). Raise :class:`~..config.ManipulateError` naming the key."""
        raise NotImplementedError

    def hooks(self, prep: PreparedEdit, num_timesteps: int) -> list[SamplingHook]:
        until = prep.spec.get("resample_until") or 0.0
        return [
            KnownRegionHook(
                prep.reference,
                prep.mask,
                resample=prep.spec.get("resample") or 0,
                resample_until=round(until * num_timesteps) if until > 0 else None,
            )
        ]
