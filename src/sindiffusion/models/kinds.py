"""The registry of model kinds: every denoiser the pipeline can train, store and sample from.

A model kind is one class registered under its name (``params.yaml`` ``model.kind``). It owns
the options of the ``model`` section (a frozen dataclass with a ``kind`` field), how to build the
network from them, the geometry preprocessing must respect, whether ``train`` optimises anything,
and how a checkpoint stores and restores it. A trainable kind owns its training: the trainer
optimises the module :meth:`ModelKind.build` returns and writes :meth:`ModelKind.stored_config`
into the checkpoint. Everything else (config validation, the train stage, the trainer, checkpoint
loading, the CLI's choices, the JSON schema's enum) is derived from :data:`MODEL_KINDS`.

Adding a kind = one module ``models/<name>_kind.py`` with a :class:`ModelKind` subclass decorated
with :func:`register` (``models/__init__.py`` imports every ``*_kind`` module after this one, so
neither side imports the other late), plus its test (the contract tests in
``tests/models/test_kinds.py`` run every registered kind automatically). A kind defined elsewhere
(a plug-in, a test) registers the same way when its module is imported.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..diffusion.gaussian import GaussianDiffusion
from ..registry import Registry

#: The kind a model section or checkpoint without a ``kind`` key has (every checkpoint before kinds existed).
DEFAULT_KIND = "unet"


@dataclass(frozen=True)
class Geometry:
    """What preprocessing must respect: sides a multiple of ``size_multiple``, at least ``min_side`` px."""

    size_multiple: int
    min_side: int


class ModelKind(ABC):
    """One kind of denoiser ``(x_t [B,3,H,W], t [B]) -> eps [B,3,H,W]``."""

    name: ClassVar[str]
    help: ClassVar[str]
    options: ClassVar[type]
    """Frozen dataclass of the ``model`` section's keys for this kind: a ``kind`` field, every other key
    declared with :func:`sindiffusion.validation.opt` (type, range, choices) so that the config engine
    checks it at load time and the JSON schema lists it; cross-key checks in ``__post_init__``."""
    trainable: ClassVar[bool]
    """True: the trainer (:class:`sindiffusion.training.Trainer`) optimises the module :meth:`build` returns
    and writes :meth:`stored_config` as the checkpoint's ``config.model``. False: ``train`` only builds the
    model from the image and stores it (no optimisation)."""

    @abstractmethod
    def geometry(self, options: Any) -> Geometry:
        """Size constraints on the training image."""

    @abstractmethod
    def receptive_field(self, options: Any, size: tuple[int, int]) -> int:
        """Side (px, full resolution) of the largest region one output pixel depends on, for an image of ``size``."""

    @abstractmethod
    def build(self, options: Any, diffusion: GaussianDiffusion, image: torch.Tensor | None) -> nn.Module:
        """A fresh model. ``image``: the training image in [-1, 1] (training-free kinds need it).

        For a trainable kind this is the module the trainer optimises; it is built right after the
        trainer seeds torch with ``train.seed``, so its initial weights come from that seed."""

    def channels_last(self, options: Any) -> bool:
        """Whether ``train.channels_last: auto`` trains in channels-last memory on CUDA (convolutional
        nets gain from it; ``on``/``off`` override). Only trainable kinds are asked."""
        return True

    def stored_config(self, options: Any) -> dict:
        """The ``config.model`` entry of a checkpoint: enough to rebuild the model."""
        return {"kind": self.name, **{k: v for k, v in dataclasses.asdict(options).items() if k != "kind"}}

    def options_from_stored(self, stored: dict) -> Any:
        """Inverse of :meth:`stored_config` (lists back to tuples)."""
        fields = {f.name for f in dataclasses.fields(self.options)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in fields}
        return self.options(**values)

    def from_checkpoint(self, ckpt: dict, state: dict[str, torch.Tensor], diffusion: GaussianDiffusion) -> nn.Module:
        """Rebuild the model a checkpoint describes and load ``state`` (its ``model`` or ``ema`` entry)."""
        model = self.build(self.options_from_stored(ckpt["config"]["model"]), diffusion, None)
        model.load_state_dict(state)
        return model.eval()


#: ``model.kind`` -> the kind (one instance each), in registration order: the same
#: :class:`~sindiffusion.registry.Registry` as samplers, applications and metrics.
MODEL_KINDS: Registry[ModelKind] = Registry("model kind")


def register(cls: type[ModelKind]) -> type[ModelKind]:
    """Class decorator: add one instance of ``cls`` to :data:`MODEL_KINDS` under ``cls.name``."""
    MODEL_KINDS.register(cls.name)(cls())
    return cls


def get_kind(name: str, where: str = "model.kind") -> ModelKind:
    """The registered kind ``name``; ``ValueError`` naming ``where`` and the choices otherwise."""
    if name not in MODEL_KINDS:
        raise ValueError(f"{where}: unknown model kind {name!r}; choose one of {', '.join(sorted(MODEL_KINDS))}")
    return MODEL_KINDS.get(name)


def kind_of_checkpoint(ckpt: dict) -> ModelKind:
    """The kind that wrote ``ckpt`` (checkpoints from before kinds existed are UNets)."""
    return get_kind(str(ckpt["config"]["model"].get("kind", DEFAULT_KIND)), "checkpoint config.model.kind")
