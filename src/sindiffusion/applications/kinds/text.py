"""``text``: text-guided generation with CLIP (SinDiffusion eq. 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch

from ...config import opt
from ...diffusion import SamplingHook
from ..base import APPLICATIONS, Application, ClipGuide, EditContext, PreparedEdit
from ..config import EditOptions, EditSpec, ManipulateConfig, ManipulateError, SizeOptions
from ..text import CLIPGuidanceHook, MissingCLIPWeightsError, check_clip_weights, clip_score, encode_text, load_clip


@dataclass(frozen=True, kw_only=True)
class TextOptions(SizeOptions, EditOptions):
    EXAMPLE: ClassVar[dict[str, Any]] = {"prompt": "a red mountain"}
    prompt: str = opt(help="what the image should show")
    guidance_scale: float = opt(1000.0, ge=0, help="CLIP guidance scale s of eq. (5)")
    cutouts: int = opt(8, ge=1, help="random crops of x0 fed to CLIP per step")
    clip_model: Optional[str] = opt(None, min_len=1, help="open_clip architecture (default: manipulate.clip_model)")
    clip_pretrained: Optional[str] = opt(
        None, min_len=1, help="pretrained tag or local weights file (default: manipulate.clip_pretrained)"
    )

    def check(self, where: Callable[[str], str]) -> None:
        if not self.prompt.strip():
            raise ManipulateError(
                f"{where('prompt')}: the prompt is empty; describe the image, e.g. 'a photo of a mountain at sunset'"
            )


def load_clip_guide(
    spec: EditSpec, cfg: ManipulateConfig, device: torch.device, cache: dict[tuple[str, str], tuple]
) -> ClipGuide:
    """The CLIP model of the edit (``cache`` shares one per (model, weights) across edits) and its prompt's features."""
    model_name = spec.get("clip_model", cfg.clip_model)
    pretrained = spec.get("clip_pretrained", cfg.clip_pretrained)
    key = (model_name, pretrained)
    cache_dir = cfg.clip_cache_dir or None
    if key not in cache:
        try:
            # why: open_clip is an optional heavy dependency, only for text-guided edits
            import open_clip

            if model_name not in open_clip.list_models() and not model_name.startswith(("hf-hub:", "local-dir:")):
                raise ManipulateError(
                    f"{spec.where('clip_model')}: unknown open_clip model {model_name!r}; "
                    "e.g. ViT-B-32, ViT-B-16, ViT-L-14 (open_clip.list_models())"
                )
            check_clip_weights(model_name, pretrained, cache_dir=cache_dir)
            cache[key] = load_clip(model_name, pretrained, device=device, cache_dir=cache_dir)
        except MissingCLIPWeightsError as err:
            raise ManipulateError(f"{spec.where('clip_pretrained')}: {err}") from err
    model, normalize, tokenizer = cache[key]
    try:
        text = encode_text(model, tokenizer, spec["prompt"])
    except ValueError as err:
        raise ManipulateError(f"{spec.where('prompt')}: {err}") from err
    return ClipGuide(model, normalize, text, model_name, pretrained)


@APPLICATIONS.register("text")
class Text(Application):
    name = "text"
    help = "text-guided generation with CLIP (eq. 5)"
    hooks_doc = "`CLIPGuidanceHook` on the unclipped predicted x0, random cutouts"
    Options = TextOptions

    def prepare(self, prep: PreparedEdit, ctx: EditContext) -> None:
        super().prepare(prep, ctx)
        prep.clip = load_clip_guide(prep.spec, ctx.cfg, ctx.bundle.device, ctx.clip_cache)

    def hooks(self, prep: PreparedEdit, num_timesteps: int) -> list[SamplingHook]:
        o = prep.spec.options
        return [
            CLIPGuidanceHook(
                prep.clip.model,
                prep.clip.text_features,
                o["guidance_scale"],
                cutouts=o["cutouts"],
                normalize=prep.clip.normalize,
            )
        ]

    def metrics(
        self, prep: PreparedEdit, samples: torch.Tensor, bundle: Any
    ) -> tuple[dict[str, float], dict[str, list[float]]]:
        metrics, per_sample = super().metrics(prep, samples, bundle)
        scores = clip_score(prep.clip.model, samples.to(bundle.device), prep.clip.text_features, prep.clip.normalize)
        per_sample["clip_score"] = [float(v) for v in scores]
        metrics["clip_score"] = float(scores.mean())
        return metrics, per_sample
