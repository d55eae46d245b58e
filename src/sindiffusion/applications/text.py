"""Text-guided generation with CLIP (SinDiffusion eq. 5).

The reverse mean is shifted along the gradient of a CLIP image-text similarity::

    mu_hat = mu_theta(x_t) + s * Sigma * grad_{x_t} log C(x_t, text)      (SinDiffusion, eq. 5)

As in guided-diffusion's ``cond_fn`` and Crowson's CLIP-guided diffusion, the similarity is
measured on the *predicted clean image* ``pred_x0(x_t)`` (CLIP never saw noisy images), cut
into random crops ("cutouts", optionally flipped) so that the gradient is not an adversarial
pattern for one 224 px view. :class:`CLIPGuidanceHook.guidance` returns
``s * d sim / d x_t``; the sampler applies it (``mean + Sigma * grad`` for DDPM, the
eps-shift of Dhariwal & Nichol's Algorithm 2 for DDIM).

Images are ``[B, 3, H, W]`` in [-1, 1]. Weights: :func:`load_clip` takes an open_clip
pretrained *tag* (downloaded once into the Hugging Face hub cache, then usable offline with
``HF_HUB_OFFLINE=1``) or a local checkpoint file; missing weights raise
:class:`MissingCLIPWeightsError` with instructions.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..diffusion import ModelOutput, SamplingContext, SamplingHook

__all__ = [
    "CLIPGuidanceHook",
    "CLIPNormalize",
    "MissingCLIPWeightsError",
    "check_clip_weights",
    "clip_score",
    "encode_text",
    "load_clip",
    "make_cutouts",
]

# OpenAI CLIP's normalisation, used when a model carries no preprocess config.
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class MissingCLIPWeightsError(RuntimeError):
    """The CLIP weights asked for are not available (offline, not cached, or a wrong path)."""

    def __init__(self, model_name: str, pretrained: str, reason: str) -> None:
        self.model_name = model_name
        self.pretrained = pretrained
        super().__init__(
            f"CLIP weights for model {model_name!r} with pretrained={pretrained!r} are not available: {reason}. "
            "To get them: run once with internet access (open_clip downloads the tag into the Hugging Face "
            "hub cache, or into cache_dir; afterwards HF_HUB_OFFLINE=1 works), or download the checkpoint "
            "yourself and pass its local path (.bin, .pt, .pth or .safetensors) as `pretrained`. "
            "Known tags for this model: " + (", ".join(_known_tags(model_name)) or "none")
        )


def _known_tags(model_name: str) -> list[str]:
    try:
        # why: open_clip is an optional heavy dependency, only for text-guided edits
        import open_clip

        return list(open_clip.list_pretrained_tags_by_model(model_name))
    except Exception:  # pragma: no cover - only used in an error message
        return []


@dataclass(frozen=True)
class CLIPNormalize:
    """Differentiable CLIP input transform for tensors (the PIL transforms of open_clip are not).

    ``__call__``: ``[N, 3, H, W]`` in [-1, 1] -> ``[N, 3, S, S]`` resized (bicubic, antialiased
    when shrinking) to ``image_size`` and normalised with CLIP's ``mean``/``std``.
    """

    image_size: tuple[int, int]
    mean: tuple[float, float, float] = _OPENAI_MEAN
    std: tuple[float, float, float] = _OPENAI_STD

    @classmethod
    def for_model(cls, clip_model: torch.nn.Module) -> "CLIPNormalize":
        """Read size, mean and std from an open_clip model (``model.visual.preprocess_cfg``)."""
        visual = clip_model.visual
        cfg = getattr(visual, "preprocess_cfg", None) or {}
        size = cfg.get("size", getattr(visual, "image_size", 224))
        size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        mean = tuple(float(v) for v in cfg.get("mean", getattr(visual, "image_mean", None) or _OPENAI_MEAN))
        std = tuple(float(v) for v in cfg.get("std", getattr(visual, "image_std", None) or _OPENAI_STD))
        return cls(size, mean, std)  # type: ignore[arg-type]

    def __call__(self, images: torch.Tensor, resize: bool = True) -> torch.Tensor:
        x = (images + 1.0) / 2.0
        if resize and tuple(x.shape[-2:]) != self.image_size:
            shrink = x.shape[-2] > self.image_size[0] or x.shape[-1] > self.image_size[1]
            x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False, antialias=shrink)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std


def _looks_like_path(pretrained: str) -> bool:
    return (
        os.sep in pretrained
        or "/" in pretrained
        or Path(pretrained).suffix.lower() in (".bin", ".pt", ".pth", ".safetensors", ".ckpt")
    )


def _hf_cached(repo_id: str, filename: str, cache_dir: str | Path | None) -> bool:
    try:
        # why: comes with open_clip, an optional dependency of text-guided edits
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - open_clip's hub support is optional
        return False
    names = [filename]
    if filename.endswith(".bin"):
        names.insert(0, filename[: -len(".bin")].replace("pytorch_", "") + ".safetensors")
    for name in names:
        found = try_to_load_from_cache(repo_id, name, cache_dir=None if cache_dir is None else str(cache_dir))
        if isinstance(found, str):
            return True
    return False


def _online(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_clip_weights(
    model_name: str, pretrained: str, cache_dir: str | Path | None = None, timeout: float = 3.0
) -> str:
    """Fail fast when the CLIP weights cannot be obtained; return how they will be loaded.

    Without this check open_clip retries a download for about a minute before giving up.
    Returns ``"file"`` (a local checkpoint), ``"cached"`` (in the Hugging Face / ``cache_dir`` cache)
    or ``"download"`` (not cached, but huggingface.co is reachable).

    Raises:
        MissingCLIPWeightsError: empty tag, missing file, unknown tag, or a tag that is neither
            cached nor downloadable (``HF_HUB_OFFLINE=1`` or no network).
    """
    # why: open_clip is an optional heavy dependency, only for text-guided edits
    import open_clip

    if not pretrained or not str(pretrained).strip():
        raise MissingCLIPWeightsError(model_name, str(pretrained), "no pretrained tag or file given")
    if os.path.isfile(pretrained):
        return "file"
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        if _looks_like_path(pretrained):
            raise MissingCLIPWeightsError(model_name, pretrained, f"no such file: {pretrained}")
        raise MissingCLIPWeightsError(model_name, pretrained, "not a known tag for this model nor a file")
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return "file"
    hub = cfg.get("hf_hub", "")
    if hub:
        parts = hub.split("/")
        repo_id = "/".join(parts[:2])
        filename = parts[2] if len(parts) > 2 and parts[2] else "open_clip_pytorch_model.bin"
        if _hf_cached(repo_id, filename, cache_dir):
            return "cached"
    elif cfg.get("url") and cache_dir is not None:
        if (Path(cache_dir) / os.path.basename(cfg["url"])).is_file():
            return "cached"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline:
        raise MissingCLIPWeightsError(model_name, pretrained, "not in the cache and HF_HUB_OFFLINE is set")
    if not _online(timeout=timeout):
        raise MissingCLIPWeightsError(
            model_name, pretrained, "not in the cache and huggingface.co cannot be reached (offline)"
        )
    return "download"


def load_clip(
    model_name: str, pretrained: str | None, device: torch.device | str = "cpu", cache_dir: str | Path | None = None
) -> tuple[torch.nn.Module, CLIPNormalize, Callable[..., torch.Tensor]]:
    """Load an open_clip model for guidance; never trains it (eval mode, ``requires_grad=False``).

    Args:
        model_name: an open_clip architecture, e.g. ``"ViT-B-32"`` (or one registered with
            ``open_clip.add_model_config``).
        pretrained: a tag such as ``"openai"`` / ``"laion2b_s34b_b79k"``, a local checkpoint file
            (``.bin``/``.pt``/``.pth``/``.safetensors``), or ``None`` for random weights (tests only).
        cache_dir: where tags are downloaded / looked up (default: the Hugging Face hub cache).

    Returns:
        ``(model, normalize, tokenizer)``: ``normalize`` is the differentiable :class:`CLIPNormalize`
        for [-1, 1] tensors; ``tokenizer(list_of_str) -> LongTensor [N, context_length]``.

    Raises:
        MissingCLIPWeightsError: the file does not exist, the tag is unknown for this model, or the
            tag's weights cannot be downloaded (offline and not cached).
    """
    # why: open_clip is an optional heavy dependency, only for text-guided edits
    import open_clip

    if model_name not in open_clip.list_models() and not model_name.startswith(("hf-hub:", "local-dir:")):
        raise ValueError(f"unknown open_clip model {model_name!r}; available: {', '.join(open_clip.list_models())}")
    if pretrained:
        if open_clip.get_pretrained_cfg(model_name, pretrained):
            pass  # a known tag: downloaded or found in the cache by open_clip
        elif os.path.isfile(pretrained):
            pass
        elif _looks_like_path(pretrained):
            raise MissingCLIPWeightsError(model_name, pretrained, f"no such file: {pretrained}")
        else:
            raise MissingCLIPWeightsError(model_name, pretrained, "not a known tag for this model nor a file")
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            model_name,
            pretrained=pretrained or None,
            device=device,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    except RuntimeError as e:
        if pretrained and ("download" in str(e).lower() or "offline" in str(e).lower()):
            raise MissingCLIPWeightsError(model_name, pretrained, f"download failed or offline ({e})") from e
        raise
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(model_name)
    return model, CLIPNormalize.for_model(model), tokenizer


def encode_text(
    clip_model: torch.nn.Module, tokenizer: Callable[..., torch.Tensor], prompts: str | Sequence[str]
) -> torch.Tensor:
    """Unit-norm text embeddings ``[N, D]`` for ``prompts`` (one string or N strings).

    Raises ``ValueError`` for an empty prompt (nothing to guide towards).
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or any(not p or not p.strip() for p in prompts):
        raise ValueError("text prompt is empty: give a description such as 'a photo of a mountain at sunset'")
    device = next(clip_model.parameters()).device
    with torch.no_grad():
        feats = clip_model.encode_text(tokenizer(prompts).to(device))
    return F.normalize(feats.float(), dim=-1)


def make_cutouts(
    images: torch.Tensor,
    num: int,
    cut_size: tuple[int, int],
    generator: torch.Generator,
    augment: bool = True,
    min_frac: float = 0.5,
) -> torch.Tensor:
    """Random square crops resized to ``cut_size``: ``[B, C, H, W] -> [num * B, C, *cut_size]``.

    Cutout ``k`` of image ``b`` is row ``k * B + b``. Side lengths are drawn in
    ``[min_frac, 1] * min(H, W)``; the first cutout is always the whole image (resized). With
    ``augment`` each cutout is flipped horizontally with probability 1/2. All randomness comes
    from ``generator`` (CPU). Differentiable w.r.t. ``images``.
    """
    b, _, h, w = images.shape
    side_max = min(h, w)
    cuts = []
    for k in range(num):
        if k == 0:
            cut = images
        else:
            frac = min_frac + (1.0 - min_frac) * float(torch.rand((), generator=generator))
            side = max(1, int(round(frac * side_max)))
            top = int(torch.randint(0, h - side + 1, (), generator=generator))
            left = int(torch.randint(0, w - side + 1, (), generator=generator))
            cut = images[:, :, top : top + side, left : left + side]
        shrink = cut.shape[-2] > cut_size[0] or cut.shape[-1] > cut_size[1]
        cut = F.interpolate(cut, size=cut_size, mode="bilinear", align_corners=False, antialias=shrink)
        if augment and bool(torch.rand((), generator=generator) < 0.5):
            cut = cut.flip(-1)
        cuts.append(cut)
    return torch.cat(cuts, dim=0)


def _image_features(clip_model: torch.nn.Module, normalize: CLIPNormalize, images: torch.Tensor) -> torch.Tensor:
    param = next(clip_model.parameters())
    x = normalize(images.to(device=param.device, dtype=param.dtype), resize=True)
    return F.normalize(clip_model.encode_image(x).float(), dim=-1)


def _text_rows(text_features: torch.Tensor, batch: int) -> torch.Tensor:
    """``[1 or B, D]`` (or ``[D]``) unit-norm text features, broadcast to ``[B, D]``."""
    tf = text_features.float()
    tf = tf[None] if tf.dim() == 1 else tf
    if tf.shape[0] not in (1, batch):
        raise ValueError(f"text_features batch {tf.shape[0]} must be 1 or the image batch {batch}")
    return F.normalize(tf, dim=-1).expand(batch, -1)


def clip_score(
    clip_model: torch.nn.Module,
    images: torch.Tensor,
    text_features: torch.Tensor,
    normalize: CLIPNormalize | None = None,
) -> torch.Tensor:
    """Cosine similarity ``[B]`` between each whole image ``[B, 3, H, W]`` in [-1, 1] and the text.

    ``text_features``: ``[1 or B, D]``. For logging; not differentiable (no_grad).
    """
    normalize = normalize or CLIPNormalize.for_model(clip_model)
    with torch.no_grad():
        img = _image_features(clip_model, normalize, images)
        return (img * _text_rows(text_features, images.shape[0]).to(img.device)).sum(-1).cpu()


class CLIPGuidanceHook(SamplingHook):
    """Eq. (5): guide the reverse mean towards high CLIP similarity with a text.

    Args:
        clip_model: an open_clip model (:func:`load_clip`); its weights are not changed.
        text_features: ``[1 or B, D]`` text embeddings (:func:`encode_text`; renormalised here).
        scale: guidance scale ``s`` (0 disables guidance; then the result equals unguided sampling).
        cutouts: random crops of ``pred_x0`` per image (the first is the whole image).
        cut_size: ``(S, S)`` or ``S`` fed to CLIP; default the model's input size.
        augment: random horizontal flips of the cutouts.
        needs_grad: must stay True: the loop then runs the model with ``x_t.requires_grad`` so that
            ``out.pred_x0_raw`` carries the graph back to ``x_t``.
        normalize: CLIP's input transform; default read from the model.

    Randomness (cutout positions, flips) comes from a private CPU generator seeded from the loop's
    generator state at :meth:`start`; it draws nothing from the loop's stream, so a fixed seed gives
    identical output and ``scale=0`` gives exactly the unguided sample.

    The similarity is measured on ``out.pred_x0_raw``, the *unclipped* predicted x0: with
    ``sample_loop(clip_x0=True)`` (default) ``out.pred_x0`` is clamped to [-1, 1], which would zero
    the gradient of every pixel outside that range (most pixels at the noisiest steps).
    """

    def __init__(
        self,
        clip_model: torch.nn.Module,
        text_features: torch.Tensor,
        scale: float,
        cutouts: int = 8,
        cut_size: int | tuple[int, int] | None = None,
        augment: bool = True,
        needs_grad: bool = True,
        normalize: CLIPNormalize | None = None,
    ) -> None:
        if text_features.numel() == 0:
            raise ValueError("text_features is empty: encode a non-empty prompt with encode_text")
        if cutouts < 1:
            raise ValueError(f"cutouts must be >= 1, got {cutouts}")
        if scale < 0:
            raise ValueError(f"guidance scale must be >= 0, got {scale}")
        self.clip_model = clip_model
        self.text_features = text_features.detach().float()
        self.scale = float(scale)
        self.cutouts = int(cutouts)
        self.normalize = normalize or CLIPNormalize.for_model(clip_model)
        if cut_size is None:
            cut_size = self.normalize.image_size
        self.cut_size = (int(cut_size), int(cut_size)) if isinstance(cut_size, int) else tuple(int(v) for v in cut_size)
        self.augment = augment
        self.needs_grad = needs_grad
        self._generator: torch.Generator | None = None
        self._ctx: SamplingContext | None = None
        self.last_similarity: torch.Tensor | None = None  # [B], from the latest guidance call (for logging)

    def _gen(self, ctx: SamplingContext) -> torch.Generator:
        if self._generator is None or self._ctx is not ctx:
            # Derived from the loop generator's current state without drawing from it.
            state = ctx.generator.get_state().numpy().tobytes()
            seed = int.from_bytes(hashlib.sha256(state).digest()[:8], "little") % (2**63)
            self._generator = torch.Generator().manual_seed(seed)
            self._ctx = ctx
        return self._generator

    def start(self, x: torch.Tensor, t: int, ctx: SamplingContext) -> torch.Tensor:
        self._generator, self._ctx = None, None
        self._gen(ctx)
        return x

    def similarity(self, pred_x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Mean CLIP cosine similarity over cutouts, per image: ``[B, 3, H, W] -> [B]`` (differentiable)."""
        b = pred_x0.shape[0]
        cuts = make_cutouts(pred_x0, self.cutouts, self.cut_size, generator, augment=self.augment)
        feats = _image_features(self.clip_model, self.normalize, cuts)  # [n * B, D]
        text = _text_rows(self.text_features, b).to(feats.device)
        return (feats.view(self.cutouts, b, -1) * text[None]).sum(-1).mean(0)

    def guidance(self, x_t: torch.Tensor, t: int, out: ModelOutput, ctx: SamplingContext) -> torch.Tensor | None:
        if self.scale == 0.0:
            return None
        if not x_t.requires_grad or not out.pred_x0_raw.requires_grad:
            raise RuntimeError(
                "CLIPGuidanceHook needs the graph from pred_x0_raw back to x_t: keep needs_grad=True so that "
                "sample_loop runs the model with x_t.requires_grad"
            )
        # The unclipped prediction: clamping would cut the gradient of out-of-range pixels.
        sim = self.similarity(out.pred_x0_raw, self._gen(ctx))
        self.last_similarity = sim.detach().cpu()
        (grad,) = torch.autograd.grad(sim.sum(), x_t)
        return self.scale * grad.to(x_t.dtype)
