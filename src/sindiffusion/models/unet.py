"""The patch-wise denoiser of SinDiffusion: a small UNet with a limited receptive field.

It maps ``(x_t, t) -> eps`` and knows nothing about betas or sampling.
Layout (``paper`` preset, as the official code configures it)::

    conv3x3 3->64
    encoder  : ResBlock 64 | down | ResBlock 128 | down | ResBlock 256
    decoder  : ResBlock 256, 256 | up | ResBlock 128, 128 | up | ResBlock 64, 64   (skip concat)
    GroupNorm, SiLU, zero-initialised conv3x3 64->3

No attention and no middle block: the receptive field stays at 101x101 px, so the net
learns the image's patch statistics instead of memorising the whole image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as grad_checkpoint


@dataclass(frozen=True)
class UNetConfig:
    """Architecture hyper-parameters (stored in every checkpoint).

    Attributes:
        base_channels: channels at full resolution (64 in the paper).
        channel_mult: one multiplier per level; ``len`` = number of levels (3 in the paper).
        encoder_blocks: ResBlocks per encoder level (1 in the paper).
        decoder_blocks: ResBlocks per decoder level (2 in the paper); must be >= encoder_blocks + 1
            so that every skip connection is consumed.
        groups: GroupNorm groups (32); must divide every level's channel count.
        dropout: dropout inside ResBlocks.
        grad_checkpointing: recompute activations in the backward pass to save memory.
    """

    in_channels: int = 3
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)
    encoder_blocks: int = 1
    decoder_blocks: int = 2
    groups: int = 32
    dropout: float = 0.0
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        if self.in_channels < 1 or self.base_channels < 1:
            raise ValueError("model.in_channels and model.base_channels must be >= 1")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError("model.channel_mult must be a non-empty list of positive integers")
        if self.encoder_blocks < 1:
            raise ValueError("model.encoder_blocks must be >= 1")
        if self.decoder_blocks < self.encoder_blocks + 1:
            raise ValueError(
                f"model.decoder_blocks ({self.decoder_blocks}) must be >= encoder_blocks + 1 "
                f"({self.encoder_blocks + 1}) so that every skip connection is used"
            )
        for m in self.channel_mult:
            if (self.base_channels * m) % self.groups:
                raise ValueError(
                    f"model.groups ({self.groups}) must divide every level's channels "
                    f"({self.base_channels}*{m} = {self.base_channels * m})"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("model.dropout must be in [0, 1)")

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    @property
    def size_multiple(self) -> int:
        """H and W the network sees must be multiples of this (2 ** (levels - 1))."""
        return 2 ** (self.levels - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        return d


PRESETS: dict[str, UNetConfig] = {
    # The official code's configuration: 6.99 M parameters, receptive field 101 px.
    "paper": UNetConfig(),
    # The paper's "enhanced" high-resolution model (no official code).
    "enhanced": UNetConfig(channel_mult=(1, 2, 4, 8), encoder_blocks=2, decoder_blocks=3),
}


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32. ``detach_stats`` treats mean/var as constants, which is
    how the receptive field is measured (GroupNorm statistics otherwise couple all pixels)."""

    detach_stats: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.detach_stats:
            return super().forward(x.float()).to(x.dtype)
        b, c = x.shape[:2]
        xg = x.float().reshape(b, self.num_groups, -1)
        mean = xg.mean(-1, keepdim=True).detach()
        var = xg.var(-1, unbiased=False, keepdim=True).detach()
        xg = (xg - mean) / torch.sqrt(var + self.eps)
        out = xg.reshape_as(x) * self.weight.view(1, c, *([1] * (x.dim() - 2))) + self.bias.view(
            1, c, *([1] * (x.dim() - 2))
        )
        return out.to(x.dtype)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al.): ``t: [B]`` -> ``[B, dim]`` float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GN-SiLU-conv, FiLM by the time embedding (``GN(h) * (1 + scale) + shift``), SiLU-dropout-zero-conv,
    plus a 1x1 skip when the channel count changes. ``[B, C_in, H, W] -> [B, C_out, H, W]``."""

    def __init__(
        self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float, use_checkpoint: bool
    ) -> None:
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.in_norm = GroupNorm32(groups, in_ch)
        self.in_conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.out_norm = GroupNorm32(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = zero_module(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return grad_checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_conv(F.silu(self.in_norm(x)))
        scale, shift = self.emb(F.silu(emb)).to(h.dtype)[:, :, None, None].chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        h = self.out_conv(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """conv3x3, stride 2: ``[B, C, H, W] -> [B, C, H/2, W/2]``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """nearest x2 then conv3x3: ``[B, C, H, W] -> [B, C, 2H, 2W]``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Fully convolutional eps-predictor.

    ``forward(x, t)``: ``x: [B, C, H, W]`` (any H, W), ``t: [B]`` integer steps -> ``eps: [B, C, H, W]``.
    When H or W is not a multiple of :attr:`UNetConfig.size_multiple`, ``x`` is reflect-padded
    (never zero-padded: zeros are not a valid noisy image) and the output cropped back.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        ch = c.base_channels
        emb_dim = 4 * ch
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(c.in_channels, ch, 3, padding=1)

        def block(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, emb_dim, c.groups, c.dropout, c.grad_checkpointing)

        # Encoder: every block's output (and conv_in's, and each downsample's) is a skip.
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        skip_channels = [ch]
        cur = ch
        for level, mult in enumerate(c.channel_mult):
            blocks = nn.ModuleList()
            for _ in range(c.encoder_blocks):
                blocks.append(block(cur, ch * mult))
                cur = ch * mult
                skip_channels.append(cur)
            self.down_blocks.append(blocks)
            if level < c.levels - 1:
                self.downsamples.append(Downsample(cur))
                skip_channels.append(cur)

        # Decoder: per level, the first encoder_blocks + 1 blocks each consume one skip. The very
        # first one would be the encoder's last output, i.e. the decoder's own input: as in the
        # official code it is not concatenated again (6.99 M parameters for ``paper``).
        self.up_blocks = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        self._skip_use: list[list[bool]] = []
        for level in reversed(range(c.levels)):
            mult = c.channel_mult[level]
            blocks = nn.ModuleList()
            use = []
            for j in range(c.decoder_blocks):
                takes_skip = j < c.encoder_blocks + 1
                extra = skip_channels.pop() if takes_skip else 0
                if level == c.levels - 1 and j == 0:
                    takes_skip, extra = False, 0
                blocks.append(block(cur + extra, ch * mult))
                cur = ch * mult
                use.append(takes_skip)
            self.up_blocks.append(blocks)
            self._skip_use.append(use)
            if level > 0:
                self.upsamples.append(Upsample(cur))
        assert not skip_channels
        self.out_norm = GroupNorm32(c.groups, cur)
        self.out_conv = zero_module(nn.Conv2d(cur, c.in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h0, w0 = x.shape[-2:]
        m = self.config.size_multiple
        pad_h, pad_w = (-h0) % m, (-w0) % m
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h0 and pad_w < w0 else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        emb = self.time_embed(timestep_embedding(t, self.config.base_channels).to(x.dtype))
        h = self.conv_in(x)
        skips = [h]
        for level, blocks in enumerate(self.down_blocks):
            for blk in blocks:
                h = blk(h, emb)
                skips.append(h)
            if level < len(self.downsamples):
                h = self.downsamples[level](h)
                skips.append(h)
        skips.pop()  # == h: see __init__
        for i, blocks in enumerate(self.up_blocks):
            for blk, takes_skip in zip(blocks, self._skip_use[i]):
                if takes_skip:
                    h = torch.cat([h, skips.pop()], dim=1)
                h = blk(h, emb)
            if i < len(self.upsamples):
                h = self.upsamples[i](h)
        out = self.out_conv(F.silu(self.out_norm(h)))
        return out[..., :h0, :w0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
