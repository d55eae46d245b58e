"""A typed, validated view of ``params.yaml``: the one config engine.

``params.yaml`` has one section per stage (``preprocess``, ``model``, ``diffusion``, ``train``,
``sample``, ``evaluate``, ``manipulate``) plus ``data`` (which images, where results go) and
``tracking`` (MLflow). Each section is a frozen dataclass whose annotations and field metadata
(:func:`opt`) are the single source of what a key accepts: its type, ``Literal`` choices or the
names of a registry, and its range. :func:`load_params` checks every section of the file (and
every ``--set`` override) against them, so a wrong value fails at load time with the file, the
key, the value and what is allowed. The Snakemake JSON schema is generated from the same
metadata (:func:`json_schema`; ``python -m sindiffusion.config`` prints it).

The model section has kinds (``model.kind``), each with its own options dataclass, registered
in :data:`MODEL_KINDS` -- the same pattern as the per-kind options of the manipulate edits
(:mod:`sindiffusion.applications`), which reuse :func:`build_section`.

This module imports no subsystem (training, applications, evaluation, stages); only the core
registries it takes choices from (samplers, schedules, model presets).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping, Optional, Union

import yaml

from .diffusion.samplers import SAMPLERS
from .diffusion.schedule import SCHEDULES
from .diffusion.x0 import MODES as X0_MODES
from .models.kinds import DEFAULT_KIND
from .models.kinds import MODEL_KINDS as _MODEL_KIND_REGISTRY
from .models.unet_kind import UNetOptions
from .paths import check_image_name
from .runtime import PRECISIONS
from .validation import FieldError, Rule, field_rules, opt
from .yamlfile import YamlError, load_yaml


class ConfigError(ValueError):
    """A problem in params.yaml or an override; the message names the file and key."""


# ---------------------------------------------------------------------------- field rules


#: ``auto``, ``cpu``, ``mps``, ``cuda`` or ``cuda:N``.
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"


def build_section(
    cls: type,
    raw: Any,
    where: str,
    *,
    key_where: Callable[[str], str] | None = None,
    error: type[Exception] = ConfigError,
) -> Any:
    """Build dataclass ``cls`` from the mapping ``raw``: unknown keys (with a did-you-mean hint, or the
    new name of a key ``cls.RENAMED`` lists), types, choices and ranges are checked; ``where`` (e.g.
    ``params.yaml: train``) prefixes every message.

    ``key_where(key)`` spells a key in messages (default ``f"{where}.{key}"``; a command line uses
    ``--flag``). A ``__post_init__`` of ``cls`` may raise ``ValueError`` for checks across keys.
    """
    key_where = key_where or (lambda key: f"{where}.{key}")
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise error(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    rules = field_rules(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in rules:
            renamed = getattr(cls, "RENAMED", {}).get(key)  # a key of an earlier release
            if renamed is not None:
                hint = f" (renamed {renamed!r})"
            else:
                close = difflib.get_close_matches(str(key), list(rules), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(rules)}"
            raise error(f"{key_where(str(key))}: unknown key{hint}")
        kwargs[key] = rules[key].check(value, key_where(key), error)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise error(f"{key_where(missing[0])}: required ({rules[missing[0]].allowed()})")
    try:
        return cls(**kwargs)
    except FieldError as err:  # a check in __post_init__ that names its key
        raise error(f"{key_where(err.key)}: {err}") from err
    except (TypeError, ValueError) as err:
        if isinstance(err, error):
            raise
        raise error(f"{where}: {err}") from err


@dataclass(frozen=True)
class KindTable:
    """A section (or list item) whose keys depend on its ``kind``: ``kind name -> options dataclass``.

    Each options dataclass has a ``kind`` field whose choices are this table's names. The model
    section is one (:data:`MODEL_KINDS`); the manipulate edits are another.
    """

    what: str
    kinds: Mapping[str, type]
    """A dict (filled by :meth:`register`) or a read-only view of a registry."""
    default: str | None = None
    key: str = "kind"

    def register(self, name: str) -> Callable[[type], type]:
        def add(cls: type) -> type:
            self.kinds[name] = cls  # type: ignore[index]
            return cls

        return add

    def names(self) -> tuple[str, ...]:
        return tuple(self.kinds)

    def build(
        self,
        raw: Any,
        where: str,
        *,
        key_where: Callable[[str], str] | None = None,
        error: type[Exception] = ConfigError,
    ) -> Any:
        key_where = key_where or (lambda key: f"{where}.{key}")
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise error(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
        kind = raw.get(self.key, self.default)
        if kind is None:
            raise error(f"{key_where(self.key)}: required; one of {', '.join(self.kinds)}")
        if kind not in self.kinds:
            close = difflib.get_close_matches(str(kind), list(self.kinds), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise error(
                f"{key_where(self.key)}: unknown {self.what} {kind!r}{hint}; choose one of {', '.join(self.kinds)}"
            )
        return build_section(self.kinds[kind], raw, where, key_where=key_where, error=error)


# ---------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class DataConfig:
    """Which images the pipeline runs on and where it writes.

    ``images`` empty means: every image file in ``images_dir`` (name = file stem).
    """

    images_dir: str = opt("data/images", min_len=1, help="every image file here is one pipeline image")
    images: tuple[str, ...] = opt((), help="image names (file stems); empty = every image in images_dir")
    results_dir: str = opt("results", min_len=1)

    def __post_init__(self) -> None:
        for i, name in enumerate(self.images):  # the one image-name check (commands, Snakefile, here)
            try:
                check_image_name(name, where="")
            except ValueError as err:
                raise FieldError(f"images[{i}]", str(err)) from None


@dataclass(frozen=True)
class PreprocessConfig:
    max_size: int = opt(250, ge=8)
    """Longer side after resizing (pixels); images are never upscaled."""
    max_pixels: int = opt(100_000_000, ge=1)
    """Refuse larger inputs (decompression-bomb guard) unless ``allow_large``."""
    allow_large: bool = False


#: ``model.kind`` -> options dataclass, read from the model-kind registry (:mod:`sindiffusion.models.kinds`:
#: each kind is one module with its options and how to build, store and restore the model).
MODEL_KINDS = KindTable("model kind", _MODEL_KIND_REGISTRY.view(lambda kind: kind.options), default=DEFAULT_KIND)


#: The options of the default model kind (kept under its historical name).
ModelConfig = UNetOptions


@dataclass(frozen=True)
class DiffusionConfig:
    timesteps: int = opt(1000, ge=1)
    schedule: str = opt("linear", choices=lambda: tuple(SCHEDULES))
    beta_start: float = opt(1e-4, gt=0, lt=1)
    beta_end: float = opt(0.02, gt=0, lt=1)
    """For T = 1000; rescaled by 1000 / T for other T (improved-diffusion), so beta_end * 1000 / T must be < 1."""
    variance: Literal["fixed_large", "fixed_small"] = "fixed_large"
    parameterization: Literal["eps", "v"] = "eps"
    """What the network predicts: ``eps`` (DDPM, official) or ``v`` (Salimans & Ho 2022); samplers
    always see eps (converted in ``GaussianDiffusion.eps_from_output``). Old checkpoints: eps."""

    def __post_init__(self) -> None:
        if self.beta_start > self.beta_end:
            raise ValueError(
                f"diffusion.beta_start ({self.beta_start:g}) must be <= diffusion.beta_end ({self.beta_end:g})"
            )
        if self.schedule == "linear" and self.beta_end * 1000 / self.timesteps >= 1:
            raise ValueError(
                f"diffusion.beta_end {self.beta_end:g} rescaled to diffusion.timesteps={self.timesteps} "
                f"is {self.beta_end * 1000 / self.timesteps:g} (must be < 1); use more timesteps"
            )


@dataclass(frozen=True)
class TrainConfig:
    steps: int = opt(50_000, ge=1)
    batch_size: int = opt(16, ge=1)
    lr: float = opt(5e-4, gt=0)
    weight_decay: float = opt(0.0, ge=0)
    ema_decay: Union[float, Literal["auto"]] = opt(0.9999, ge=0, le=1)
    """A number in [0, 1], or ``auto``: the decay whose half-life is ``ema_half_life`` of ``steps``."""
    ema_half_life: float = opt(0.1, gt=0, le=1)
    """With ``ema_decay: auto``: the EMA half-life as a fraction of ``steps`` (0.1 -> 10 %)."""
    ema_warmup: bool = False
    """If true, the EMA decay ramps as min(decay, (1 + step) / (10 + step)) (nanoGPT/diffusers style)."""
    grad_clip: float = opt(1.0, ge=0)
    """Clip the global gradient norm (0 = off)."""
    scale_min: float = opt(0.75, gt=0)
    scale_max: float = opt(1.25, gt=0)
    """Per-axis random rescale U(scale_min, scale_max) each step (official augmentation); 1/1 = off."""
    crop_size: Optional[int] = opt(None, ge=8)
    """Optional random square crop (pixels) after rescaling."""
    seed: int = opt(0, ge=0)
    log_every: int = opt(10, ge=1)
    save_every: int = opt(1000, ge=1)
    device: str = opt("auto", pattern=DEVICE_PATTERN)
    precision: str = opt("auto", choices=PRECISIONS)
    """``auto`` = bf16 autocast on CUDA and on CPUs with native bf16 (avx512_bf16 / AMX), else fp32;
    or ``fp32`` / ``bf16``. The loss is always computed in fp32."""
    channels_last: Literal["auto", "on", "off"] = "auto"
    """``auto`` = channels_last memory format on CUDA only; or ``on`` / ``off``."""
    loss_weighting: Literal["none", "min_snr"] = "none"
    """``none`` (DDPM's simple loss) or ``min_snr`` (Hang et al. 2023: weight min(SNR, gamma)/SNR for eps)."""
    min_snr_gamma: float = opt(5.0, gt=0)
    t_max: float = opt(1.0, gt=0, le=1)
    """Train only the noise levels t <= ``t_max`` * (T - 1) (1 = all): the ones a sampler started
    at ``sample.init_t`` visits. A model trained with ``t_max < 1`` can only sample from a start at
    or below it (``sample.init: layout`` with ``init_t <= t_max``, SDEdit edits with ``strength <=
    t_max``; not the paper's pure-noise start, outpaint, inpaint, super-resolution or text): the
    checkpoint records it and a higher start is refused."""
    lr_warmup: int = opt(0, ge=0)
    """Linear learning-rate warm-up over this many steps (0 = none)."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """``constant`` or ``cosine`` (decay from ``lr`` to 0 at ``steps``, after the warm-up)."""
    max_minutes: Optional[float] = opt(None, gt=0)
    """Wall-clock budget: stop after this many minutes of training even before ``steps`` (null = none).
    The LR schedule and ``ema_decay: auto`` still plan for ``steps``: set it to about what fits."""
    snapshot_minutes: tuple[float, ...] = opt((), item={"gt": 0})
    """Save an EMA sampling checkpoint at each of these wall-clock minutes of training
    (``results/<image>/train/snapshots/min_XX.pt``); empty = none."""
    compile: bool = False
    """Run the training forward pass through ``torch.compile`` (CUDA; needs a C++ compiler on CPU)."""

    def __post_init__(self) -> None:
        if len(set(self.snapshot_minutes)) != len(self.snapshot_minutes):
            raise FieldError("snapshot_minutes", f"repeated values in {list(self.snapshot_minutes)}")
        if self.scale_min > self.scale_max:
            raise ValueError(f"train.scale_min ({self.scale_min:g}) must be <= train.scale_max ({self.scale_max:g})")


@dataclass(frozen=True)
class SamplingSettings:
    """How to run the sampling loop: shared by ``sample`` and ``manipulate`` (and each edit's overrides)."""

    sampler: str = opt("ddpm", choices=SAMPLERS.names)
    steps: int = opt(1000, ge=1)
    """Sampling steps (at most diffusion.timesteps)."""
    eta: float = opt(0.0, ge=0)
    """DDIM stochasticity (0 = deterministic, 1 = DDPM-like)."""
    seed: int = opt(0, ge=0)
    batch_size: int = opt(10, ge=1)
    clip_x0: Union[bool, str] = opt(True, also=tuple(m for m in X0_MODES if isinstance(m, str)))
    """What each step does to the predicted x0: ``false`` (nothing), ``true`` (clamp to [-1, 1],
    official), ``dynamic`` (Imagen's dynamic thresholding) or ``low_noise`` (clamp only at t <
    ``clip_x0_low_noise`` * T); see :mod:`sindiffusion.diffusion.x0`."""
    clip_x0_percentile: float = opt(0.995, gt=0, le=1)
    """``dynamic``: the quantile of |x0| that sets the threshold."""
    clip_x0_low_noise: float = opt(0.2, gt=0, le=1)
    """``low_noise``: clamp only below this fraction of the timesteps."""
    precision: str = opt("auto", choices=PRECISIONS)
    """``auto`` = bf16 autocast on CUDA and on CPUs with native bf16, else fp32; or ``fp32`` / ``bf16``."""
    use_ema: bool = True
    device: str = opt("auto", pattern=DEVICE_PATTERN)

    @property
    def sampling(self) -> "SamplingSettings":
        """Only the sampling settings (for a section that adds more keys)."""
        return SamplingSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SamplingSettings)})


#: The ``sample`` settings that read the processed training image, each with the value that turns it
#: off, in the order errors name them: what a sampler without the image (the MLflow logged model)
#: forces, and what ``sindiffusion sample`` checks the image for.
IMAGE_FREE_SAMPLE: dict[str, Any] = {"init": "noise", "finish": "none", "match_steps": 0}


@dataclass(frozen=True)
class SampleConfig(SamplingSettings):
    RENAMED: ClassVar[dict[str, str]] = {"rows_pin": "layout_pin", "rows_pin_t": "layout_pin_t"}
    """Keys of earlier releases -> their names now (named in the unknown-key error)."""

    num_samples: int = opt(10, ge=1)
    height: Optional[int] = opt(None, ge=8)
    width: Optional[int] = opt(None, ge=8)
    scale_h: float = opt(1.0, gt=0)
    scale_w: float = opt(1.0, gt=0)
    """Output size as a factor of the training image when height/width are not given."""
    init: Literal["noise", "layout", "native", "tile", "auto"] = opt(
        "noise",
        help="noise: pure noise; layout: the training image's low-pass stretched to the output size, noised "
        "to init_t (SDEdit); tile: the image tiled to the output size with a random phase (taller: rows "
        "as tile_rows says; at the training size as tile_cols says: more varied samples), then as layout, "
        "so structures keep their size (applications/tiled_layout.py); "
        "native: a layout synthesised at the output size from the image's coarse patches "
        "(applications/native_layout.py); auto: layout at the training size, tile at any other size",
    )
    init_t: float = opt(0.7, gt=0, le=1, help="init: layout/tile/native: start at this fraction of the timesteps")
    init_factor: int = opt(
        16, ge=1, help="init: layout/tile: blur of the image first (area down, bilinear up); 1 = none"
    )
    tile_rows: Literal["stretch", "smooth"] = opt(
        "stretch",
        help="init: tile, a taller canvas: stretch: every row stretched evenly; smooth: the extra rows go to "
        "the image's smooth rows (sky, lawn) so objects keep their height, and match_steps matches those "
        "proportions (applications/tiled_layout.py)",
    )
    tile_cols: Literal["roll", "swap"] = opt(
        "roll",
        help="init: tile at the training size: roll: the image rolled sideways by a random phase (one seam, "
        "objects at the phase cut by the canvas's edges); swap: two adjacent inner strips swapped, cut where "
        "the columns agree (three seams; the image's edges stay the canvas's) (applications/tiled_layout.py)",
    )
    swap_pool: float = opt(
        0.05,
        gt=0,
        le=1,
        help="tile_cols: swap: each sample's arrangement is drawn from this fraction of all arrangements, the "
        "cheapest (whose junctions' columns agree best) first; larger = more varied layouts, more visible cuts",
    )
    seam_t: float = opt(
        0.0,
        ge=0,
        le=1,
        help="init: tile/auto: start a band around each seam (where the image's right edge meets its left) "
        "from this fraction of the timesteps, the rest held at the noised layout until init_t "
        "(applications/tiled_layout.py); 0, or not above init_t = off (the seams start with the rest)",
    )
    seam_width: float = opt(
        0.25, gt=0, le=1, help="seam_t: width of the band around each seam, as a fraction of the image's width"
    )
    seam_pin: int = opt(
        0,
        ge=0,
        le=256,
        help="seam_t: while the band is redrawn, hold its coarse band to the layout's (down by this factor, "
        "ILVR), so that no object is drawn where the layout has sky; at most a quarter of the output's "
        "short side (a smaller output gets that); 0 = off",
    )
    layout_pin: int = opt(
        0,
        ge=0,
        le=256,
        help="init: tile (auto: at any size but the training size): hold the whole canvas's coarse band (down by "
        "this factor) to the noised layout's (ILVR) from the start down to layout_pin_t, so that the sample keeps "
        "the layout's large regions: no sky drawn into the ground, no slabs of mountain or pieces of tree in the "
        "sky (applications/tiled_layout.py); at most a quarter of the output's short side; 0 = off",
    )
    layout_pin_t: float = opt(0.3, ge=0, le=1, help="layout_pin: hold the band down to this fraction of the timesteps")
    layout_side: int = opt(12, ge=3, le=256, help="init: native: short side (px) of the coarse canvas")
    layout_patch: int = opt(7, ge=1, le=63, help="init: native: odd patch side (px) of the coarse synthesis")
    layout_noise: float = opt(1.0, ge=0, le=10, help="init: native: std of the canvas' starting noise")
    layout_iters: int = opt(8, ge=1, le=100, help="init: native: nearest-patch iterations")
    finish: Literal["none", "nearest"] = opt(
        "none",
        help="none: the denoiser's last output; nearest: replace every patch by its nearest training patch "
        "(keys blurred, values sharp, a narrow vote: applications/nearest_finish.py), as GPNN ends",
    )
    finish_patch: int = opt(7, ge=1, le=63, help="finish: nearest: odd patch side (px)")
    finish_blur: float = opt(
        1.5, ge=0, le=10, help="finish: nearest: Gaussian std (px) of the keys (the sample's blur)"
    )
    finish_window: float = opt(0.5, gt=0, le=10, help="finish: nearest: Gaussian std (px) of each patch's vote")
    finish_cells: int = opt(
        0,
        ge=0,
        le=4096,
        help="finish: nearest: search every training patch within k-means cells (0 = every 2nd row/column, refined)",
    )
    finish_probes: int = opt(8, ge=1, le=4096, help="finish: nearest: with finish_cells, cells searched per patch")
    finish_coherence: float = opt(
        0.0,
        ge=0,
        le=100,
        help="finish: nearest: > 0: neighbouring pixels copy from neighbouring places of the image, this "
        "weight x the mean match distance per neighbour that disagrees (applications/nearest_finish.py); "
        "0 = each pixel's nearest patch",
    )
    match_steps: int = opt(
        0,
        ge=0,
        le=10000,
        help="after the last step (before finish): Adam steps per level moving the sample's patch distribution "
        "to the image's (sliced Wasserstein, GPDM: applications/patch_matching.py); 0 = off",
    )
    match_levels: tuple[int, ...] = opt(
        (4, 2, 1), item={"ge": 1, "le": 64}, min_len=1, help="match_steps: downscale factors, coarse first"
    )
    match_lr: float = opt(0.02, gt=0, le=1, help="match_steps: Adam learning rate (pixels in [-1, 1])")
    match_patch: int = opt(7, ge=1, le=63, help="match_steps: patch side (px)")
    match_projections: int = opt(32, ge=1, le=4096, help="match_steps: random directions per step")

    def start_kind(self, size: tuple[int, int], train_size: tuple[int, int]) -> str:
        """The start used for a ``size`` sample of a ``train_size`` image: ``init``, with ``auto``
        resolved (``layout`` at the training size, ``tile`` at any other)."""
        if self.init != "auto":
            return self.init
        return "layout" if tuple(size) == tuple(train_size) else "tile"

    def seam_redraw_t(self, start: str) -> float:
        """The fraction of the timesteps the seams' band starts from with the resolved ``start``
        (:meth:`start_kind`): ``seam_t`` where it redraws (the tile start, above ``init_t``), else 0."""
        return self.seam_t if start == "tile" and self.seam_t > self.init_t else 0.0

    def __post_init__(self) -> None:
        if self.layout_patch % 2 == 0:
            raise FieldError("layout_patch", f"must be an odd integer, got {self.layout_patch}")
        if self.layout_side < self.layout_patch:
            raise FieldError("layout_side", f"{self.layout_side} is smaller than layout_patch ({self.layout_patch})")
        if self.finish_patch % 2 == 0:
            raise FieldError("finish_patch", f"must be an odd integer, got {self.finish_patch}")
        # seam_t and seam_pin are sub-options of the tile start, ignored where it is not used (as the
        # layout_* keys are without init: native), so that turning the start, the redraw or init_t
        # another way never needs a second key changed: see seam_redraw_t.
        if self.seam_pin == 1:
            raise FieldError("seam_pin", "must be 0 (off) or a factor >= 2 (1 would hold the whole band)")
        if self.layout_pin == 1:
            raise FieldError("layout_pin", "must be 0 (off) or a factor >= 2 (1 would hold the whole canvas)")
        object.__setattr__(self, "match_levels", tuple(self.match_levels))


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    experiment: str = opt("sindiffusion", min_len=1)
    tracking_uri: Optional[str] = opt(None, min_len=1)
    """None = ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db``."""
    log_checkpoint: bool = False
    """Also upload the checkpoint file as a run artifact (the logged model holds it anyway)."""
    log_model: bool = True
    """Log the trained model as an MLflow logged model (the experiment's *Models* tab), linked to its
    train run, the training image and its evaluate metrics: a ``pyfunc`` model whose artifact is the
    checkpoint file, loadable by ``models:/`` or ``runs:/`` URI (``sindiffusion sample --model-uri``,
    ``mlflow.pyfunc.load_model(uri).predict({...})``; docs/pipeline.md)."""
    register_as: Optional[str] = opt(None, pattern=r"^([A-Za-z0-9_.-]|\{image\})+$")
    """Also register each logged model as a new version of this registered model (letters, digits,
    ``_ . -``; ``{image}`` is replaced by the image name, e.g. ``sindiffusion-{image}``); null = do
    not register."""
    register_aliases: tuple[str, ...] = opt((), item={"pattern": r"^[A-Za-z0-9_-]+$"})
    """Aliases moved to each newly registered version (e.g. ``[candidate]``), so that
    ``models:/NAME@candidate`` always loads the latest training; needs ``register_as``. Not
    ``latest`` or ``v<number>`` (MLflow reserves them)."""
    system_metrics: Union[bool, Literal["auto"]] = opt("auto")
    """Log MLflow system metrics (CPU, memory, disk, network; GPU with pynvml) during train and
    sample, every 10 s (needs psutil; without it: one warning, nothing logged). ``auto``: on in a
    Slurm job (``$SLURM_JOB_ID`` set: every job of the Slurm profile), off elsewhere."""

    def __post_init__(self) -> None:
        if self.register_aliases and not self.register_as:
            raise FieldError("register_aliases", "needs tracking.register_as (the registered model to alias)")
        for alias in self.register_aliases:
            if alias.lower() == "latest" or re.fullmatch(r"[vV][0-9]+", alias):
                raise FieldError(
                    "register_aliases", f"{alias!r} is reserved by MLflow (latest, v<number>); choose another alias"
                )

    def system_metrics_on(self, environ: Mapping[str, str] | None = None) -> bool:
        """Whether :attr:`system_metrics` is on in this process (``auto``: in a Slurm job)."""
        if self.system_metrics == "auto":
            return bool((os.environ if environ is None else environ).get("SLURM_JOB_ID"))
        return bool(self.system_metrics)

    def registered_name(self, image: str) -> Optional[str]:
        """:attr:`register_as` for ``image`` (``{image}`` replaced), or None."""
        return self.register_as.replace("{image}", image) if self.register_as else None


@dataclass(frozen=True)
class EvaluateConfig:
    """How samples are scored (docs/benchmark.md, "Metrics").

    Deep metrics (those of the metric registry that declare pretrained weights, e.g. SIFID) need
    pretrained torchvision weights; when they are missing the metric is written as null with the
    reason, never computed from random weights.
    """

    sifid_layers: tuple[Literal["pool1", "pool2"], ...] = ("pool1",)
    """``pool1`` (64 ch, before Inception's first max-pool: SinGAN's released code) and/or
    ``pool2`` (192 ch, before the second pool: SinGAN's paper). Metric keys: ``sifid_<layer>``."""
    deep: bool = True
    """Compute the metrics that need pretrained weights when their weights are on disk."""
    weights_dir: Optional[str] = opt(None, min_len=1)
    """Where the pretrained checkpoints are; null = the torch hub cache ($TORCH_HOME/hub/checkpoints)."""
    device: str = opt("auto", pattern=DEVICE_PATTERN)
    patch_size: int = opt(7, ge=1)
    """Patch side of the copy score and the patch SWD."""
    copy_stride: int = opt(4, ge=1)
    """Stride between the generated patches matched by the copy score."""
    copy_threshold: float = opt(0.02, ge=0)
    """Per-pixel RMS distance under which a generated patch counts as a copy (~5/255)."""
    swd_seed: int = opt(0, ge=0)
    """Seed of the patch SWD's random projections (same directions for every image)."""
    coverage_threshold: float = opt(0.03, ge=0)
    """Per-pixel RMS distance under which a training patch counts as present in a sample (coverage; ~8/255)."""


@dataclass(frozen=True)
class ManipulateConfig(SamplingSettings):
    """``params.yaml: manipulate`` -- sampling defaults plus the per-image list of edits.

    The edits are checked by :mod:`sindiffusion.applications` (their kinds live there).
    """

    sampler: str = opt("ddim", choices=SAMPLERS.names)
    steps: int = opt(100, ge=1)
    eta: float = opt(1.0, ge=0)
    batch_size: int = opt(4, ge=1)
    num: int = opt(1, ge=1)
    """Samples per edit; ``result.png`` is the first, all are in ``samples/`` when > 1."""
    clip_model: str = opt("ViT-B-32", min_len=1)
    clip_pretrained: str = opt("openai", min_len=1)
    """An open_clip pretrained tag (Hugging Face cache) or a local weights file."""
    clip_cache_dir: str = ""
    """Where tags are downloaded / looked up ("" = the Hugging Face hub cache)."""
    edits: dict = opt({})
    """``{image name: [ {name, kind, ...}, ... ]}``."""


SECTIONS: dict[str, type | KindTable] = {
    "data": DataConfig,
    "preprocess": PreprocessConfig,
    "model": MODEL_KINDS,
    "diffusion": DiffusionConfig,
    "train": TrainConfig,
    "sample": SampleConfig,
    "tracking": TrackingConfig,
    "evaluate": EvaluateConfig,
    "manipulate": ManipulateConfig,
}

#: The sections each stage reads (and declares as DVC params).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "preprocess": ("preprocess", "model"),
    "train": ("model", "diffusion", "train"),
    "sample": ("sample",),
    "evaluate": ("evaluate",),
    "manipulate": ("manipulate",),
}


def section_variants() -> list[tuple[str, dict[str, Any], type]]:
    """``(section, base, dataclass)`` for every section and every kind of a kinded section
    (``base`` = ``{"kind": name}``): what a test or the schema iterates over."""
    out: list[tuple[str, dict[str, Any], type]] = []
    for name, spec in SECTIONS.items():
        if isinstance(spec, KindTable):
            out += [(name, {spec.key: kind}, cls) for kind, cls in spec.kinds.items()]
        else:
            out.append((name, {}, spec))
    return out


def _build(name: str, raw: Any, where: str) -> Any:
    spec = SECTIONS[name]
    if isinstance(spec, KindTable):
        return spec.build(raw, where)
    return build_section(spec, raw, where)


# ---------------------------------------------------------------------------- JSON schema
def _schema(rule: Rule) -> dict[str, Any]:
    if rule.also:
        words = {"enum": list(rule.also)}
        return {
            "anyOf": [_schema(dataclasses.replace(rule, also=(), help="")), words],
            **({"description": rule.help} if rule.help else {}),
        }
    names = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", tuple: "array"}
    out: dict[str, Any] = {"type": [names[rule.type], "null"] if rule.optional else names[rule.type]}
    if rule.choices is not None:
        out["enum"] = list(rule.choices) + ([None] if rule.optional else [])
    for key, bound in (
        ("minimum", rule.ge),
        ("exclusiveMinimum", rule.gt),
        ("maximum", rule.le),
        ("exclusiveMaximum", rule.lt),
    ):
        if bound is not None:
            out[key] = bound
    if rule.pattern:
        out["pattern"] = rule.pattern
    if rule.min_len:
        out["minLength" if rule.type is str else "minItems"] = rule.min_len
    if rule.item is not None:
        out["items"] = _schema(rule.item)
    if rule.help:
        out["description"] = rule.help
    return out


def _object_schema(cls: type) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: _schema(rule) for name, rule in field_rules(cls).items()},
    }


def json_schema() -> dict[str, Any]:
    """The JSON schema of params.yaml (Snakemake validates the file with it), from the same rules."""
    props: dict[str, Any] = {}
    for name, spec in SECTIONS.items():
        if isinstance(spec, KindTable):
            props[name] = {
                "oneOf": [{"type": "null"}] + [_kind_schema(spec, kind, cls) for kind, cls in spec.kinds.items()]
            }
        else:
            props[name] = {**_object_schema(spec), "type": ["object", "null"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "params.yaml of the SinDiffusion pipeline. GENERATED by `python -m sindiffusion.config` "
        "from sindiffusion/config.py (a test checks it is up to date); do not edit.",
        "type": "object",
        "additionalProperties": False,
        "required": ["data"],
        "properties": props,
    }


def _kind_schema(table: KindTable, kind: str, cls: type) -> dict[str, Any]:
    schema = _object_schema(cls)
    schema["properties"][table.key] = {"const": kind}
    # no `kind` key means the default kind
    return schema if kind == table.default else {**schema, "required": [table.key]}


# ---------------------------------------------------------------------------- parsing
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` -> ``(["train", "lr"], 0.0001)``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {text!r}: the key must look like section.key")
    try:
        parsed = load_yaml(value, f"--set {text!r}") if value.strip() else ""
    except YamlError as err:
        raise ConfigError(str(err).replace("invalid YAML", "cannot parse value", 1)) from err
    return parts, _yaml_number(parsed)


def _yaml_number(value: Any) -> Any:
    """PyYAML (YAML 1.1) reads ``1e-4`` as a string; accept it as a float like YAML 1.2 does."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in "e.") and value.strip() else value
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _yaml_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_number(v) for v in value]
    return value


@dataclass
class Params:
    """The merged contents of a params file (``raw``), where they came from, and every section
    validated (:func:`load_params` builds them all, so a bad value anywhere fails at load time)."""

    raw: dict
    path: str
    written: Optional[tuple[str, ...]] = None
    """The sections the file itself gives (before ``--set``); a file that is exactly ``{}`` gives
    every section (all defaults, asked for explicitly). ``None``: built in code, nothing to check."""

    def section(self, name: str) -> Any:
        """The typed, validated section ``name`` (built from :attr:`raw` on each call, so a caller
        that edits ``raw`` gets its edit checked)."""
        if name not in SECTIONS:
            raise ConfigError(f"{self.path}: unknown section {name!r}")
        return _build(name, self.raw.get(name), f"{self.path}: {name}")

    def section_dict(self, name: str) -> dict:
        """The validated section as a plain dict (all keys, defaults filled in)."""
        return _plain(dataclasses.asdict(self.section(name)))

    def stage(self, stage: str) -> dict[str, Any]:
        """All sections the stage reads, validated: ``{section: dataclass}``."""
        return {name: self.section(name) for name in STAGE_SECTIONS[stage]}


def _parent(raw: dict, keys: list[str]) -> dict:
    node = raw
    for k in keys:
        node = node[k]
    return node


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_params(path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read a params file, apply ``--set section.key=value`` overrides and validate every section.

    Raises :class:`ConfigError` for a missing/unreadable file, invalid YAML, unknown sections or
    keys, and any value of the wrong type, outside its range or not among its choices.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the params file ({err})") from err
    try:
        doc = load_yaml(text, str(path))
    except YamlError as err:  # invalid, an alias bomb, a repeated key (issue 28)
        raise ConfigError(str(err)) from err
    raw = {} if doc is None else doc  # an empty file reads as all defaults; commands check_written()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    raw = _yaml_number(raw)
    for name in raw:
        if name not in SECTIONS:
            close = difflib.get_close_matches(str(name), list(SECTIONS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known sections: {', '.join(SECTIONS)}"
            raise ConfigError(f"{path}: unknown section {name!r}{hint}")
    # what the file gives: nothing (empty, or only comments), all defaults (`{}`), or its sections
    written = () if doc is None else tuple(SECTIONS) if raw == {} else tuple(raw)
    for text in overrides:
        _apply_override(raw, text)
    params = Params(raw=raw, path=str(path), written=written)
    for name in raw:
        params.section(name)
    return params


#: The sections each pipeline command needs written in the params file, because their built-in
#: defaults change what is trained or drawn: an empty or truncated file must not run on them
#: without a word (``section: {}`` asks for a section's defaults, a file ``{}`` for all of them).
REQUIRED_SECTIONS: dict[str, tuple[str, ...]] = {
    "preprocess": ("data", "preprocess", "model"),
    "train": ("data", "model", "diffusion", "train"),
    "sample": ("data", "sample"),
}


def check_written(params: Params, command: str) -> None:
    """Raise :class:`ConfigError` naming the missing sections when the params file lacks one that
    ``command`` reads (:data:`REQUIRED_SECTIONS`); a no-op for Params built in code."""
    if params.written is None or command not in REQUIRED_SECTIONS:
        return
    missing = [name for name in REQUIRED_SECTIONS[command] if name not in params.written]
    if not missing:
        return
    what = "is empty" if not params.written else f"has no {', '.join(missing)} section{'s' * (len(missing) > 1)}"
    raise ConfigError(
        f"{params.path}: {what} (`sindiffusion {command}` reads {', '.join(REQUIRED_SECTIONS[command])}); "
        f"is the file truncated? Write `{missing[0]}: {{}}` to use a section's built-in defaults, "
        "or make the whole file `{}` to use them all"
    )


def _apply_override(raw: dict, text: str) -> None:
    keys, value = parse_override(text)
    if keys[0] not in SECTIONS:
        raise ConfigError(f"--set {text!r}: unknown section {keys[0]!r}; known: {', '.join(SECTIONS)}")
    node = raw.setdefault(keys[0], {}) or {}
    raw[keys[0]] = node
    for i, k in enumerate(keys[1:-1], start=1):
        if not isinstance(node, dict):
            break
        node = node.setdefault(k, {})
        if node is None:  # an empty mapping written as `key:` in YAML
            node = {}
            _parent(raw, keys[:i])[k] = node
    if not isinstance(node, dict):
        raise ConfigError(f"--set {text!r}: {'.'.join(keys[:-1])} is not a mapping, cannot set {keys[-1]!r} in it")
    node[keys[-1]] = value


if __name__ == "__main__":
    print("# GENERATED by `python -m sindiffusion.config > workflow/schemas/params.schema.yaml`; do not edit.")
    print(yaml.safe_dump(json_schema(), sort_keys=False, width=120), end="")
