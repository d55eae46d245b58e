"""Model kind ``unet`` (the default): the patch-wise UNet, trained by gradient descent."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from ..diffusion.gaussian import GaussianDiffusion
from .kinds import Geometry, ModelKind, register
from .receptive_field import analytic_receptive_field
from .unet import PRESETS, UNet, UNetConfig


@dataclass(frozen=True)
class UNetSection:
    """The ``model`` section for ``kind: unet``: ``preset`` (``paper``, ``enhanced`` or ``custom``)
    plus optional per-key overrides of :class:`UNetConfig`."""

    kind: Literal["unet"] = "unet"
    preset: str = "paper"
    base_channels: Optional[int] = None
    channel_mult: Optional[tuple[int, ...]] = None
    encoder_blocks: Optional[int] = None
    decoder_blocks: Optional[int] = None
    groups: Optional[int] = None
    dropout: Optional[float] = None
    grad_checkpointing: Optional[bool] = None

    def unet(self, where: str = "model") -> UNetConfig:
        """Resolve the preset and overrides into a :class:`UNetConfig` (``ValueError`` naming the key)."""
        if self.preset == "custom":
            base = UNetConfig()
        elif self.preset in PRESETS:
            base = PRESETS[self.preset]
        else:
            raise ValueError(f"{where}.preset: unknown preset {self.preset!r}; choose one of {sorted(PRESETS) + ['custom']}")
        overrides = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("preset", "kind") and v is not None}
        try:
            return dataclasses.replace(base, **overrides)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err


@register
class UNetKind(ModelKind):
    name = "unet"
    help = "the patch-wise UNet of SinDiffusion, trained on the image (minutes on a CPU, hours for the paper recipe)"
    options = UNetSection
    trainable = True

    def check(self, options: UNetSection, where: str) -> None:
        options.unet(where)

    def geometry(self, options: UNetSection) -> Geometry:
        m = options.unet().size_multiple
        return Geometry(size_multiple=m, min_side=4 * m)  # the deepest level must still be 4 px wide

    def receptive_field(self, options: UNetSection, size: tuple[int, int]) -> int:
        return analytic_receptive_field(options.unet())

    def build(self, options: UNetSection, diffusion: GaussianDiffusion, image: torch.Tensor | None) -> nn.Module:
        return UNet(options.unet())

    def stored_config(self, options: UNetSection) -> dict:
        # The resolved architecture without a kind key: the format every UNet checkpoint has always had.
        return options.unet().to_dict()

    def from_checkpoint(self, ckpt: dict, state: dict[str, torch.Tensor], diffusion: GaussianDiffusion) -> nn.Module:
        cfg = {k: v for k, v in ckpt["config"]["model"].items() if k != "kind"}
        cfg["channel_mult"] = tuple(cfg["channel_mult"])
        model = UNet(UNetConfig(**cfg))
        model.load_state_dict(state)
        return model.eval()
