"""Model kind ``unet`` (the default): the patch-wise UNet, trained by gradient descent."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from ..diffusion.gaussian import GaussianDiffusion
from ..validation import opt
from .kinds import Geometry, ModelKind, register
from .receptive_field import analytic_receptive_field
from .unet import PRESETS, UNet, UNetConfig


@dataclass(frozen=True)
class UNetOptions:
    """``model.kind: unet`` (default): ``preset`` (``paper``, ``enhanced`` or ``custom``) plus per-key overrides."""

    kind: Literal["unet"] = "unet"
    preset: str = opt("paper", choices=lambda: (*PRESETS, "custom"))
    base_channels: Optional[int] = opt(None, ge=1)
    channel_mult: Optional[tuple[int, ...]] = opt(None, min_len=1, item={"ge": 1})
    encoder_blocks: Optional[int] = opt(None, ge=1)
    decoder_blocks: Optional[int] = opt(None, ge=1)
    groups: Optional[int] = opt(None, ge=1)
    dropout: Optional[float] = opt(None, ge=0, lt=1)
    grad_checkpointing: Optional[bool] = None

    def __post_init__(self) -> None:
        self.unet()  # an impossible combination (e.g. groups not dividing the channels) fails at load time

    @classmethod
    def of(cls, unet: UNetConfig) -> UNetOptions:
        """The options that resolve to exactly ``unet`` (``preset: custom``, every key given), e.g. to
        hand a :class:`UNetConfig` to the trainer."""
        keys = {f.name for f in dataclasses.fields(cls)} - {"kind", "preset"}
        options = cls(preset="custom", **{k: v for k, v in dataclasses.asdict(unet).items() if k in keys})
        if options.unet() != unet:  # in_channels is no model key: params always give RGB
            raise ValueError(f"{unet} cannot be given as model options (in_channels must be 3)")
        return options

    def unet(self) -> UNetConfig:
        """Resolve the preset and overrides into a :class:`UNetConfig` (``ValueError`` naming the key)."""
        base = UNetConfig() if self.preset == "custom" else PRESETS[self.preset]
        overrides = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("kind", "preset") and v is not None}
        return dataclasses.replace(base, **overrides)


@register
class UNetKind(ModelKind):
    name = "unet"
    help = "the patch-wise UNet of SinDiffusion, trained on the image (minutes on a CPU, hours for the paper recipe)"
    options = UNetOptions
    trainable = True

    def geometry(self, options: UNetOptions) -> Geometry:
        m = options.unet().size_multiple
        return Geometry(size_multiple=m, min_side=4 * m)  # the deepest level must still be 4 px wide

    def receptive_field(self, options: UNetOptions, size: tuple[int, int]) -> int:
        return analytic_receptive_field(options.unet())

    def build(self, options: UNetOptions, diffusion: GaussianDiffusion, image: torch.Tensor | None) -> nn.Module:
        return UNet(options.unet())

    def stored_config(self, options: UNetOptions) -> dict:
        # The resolved architecture without a kind key: the format every UNet checkpoint has always had.
        return options.unet().to_dict()

    def from_checkpoint(self, ckpt: dict, state: dict[str, torch.Tensor], diffusion: GaussianDiffusion) -> nn.Module:
        cfg = {k: v for k, v in ckpt["config"]["model"].items() if k != "kind"}
        cfg["channel_mult"] = tuple(cfg["channel_mult"])
        model = UNet(UNetConfig(**cfg))
        model.load_state_dict(state)
        return model.eval()
