"""``sindiffusion preprocess``: raw image -> processed PNG + JSON."""

from __future__ import annotations

from pathlib import Path

from ..artifacts import write_json
from ..config import Params
from ..data.io import save_image
from ..data.preprocess import preprocess_image
from ..models.kinds import get_kind
from ..paths import find_source_image
from .common import image_paths, tracked


def run(params: Params, image: str, source: str | Path | None = None) -> dict:
    """Preprocess ``image`` (``data.images_dir/<image>.*`` unless ``source`` is given).

    On bad input raises :class:`~sindiffusion.data.io.ImageError` before anything is written.
    """
    cfg = params.section("preprocess")
    model = params.section("model")
    kind = get_kind(model.kind)
    paths = image_paths(params, image)
    src = Path(source) if source else find_source_image(params.section("data").images_dir, image)
    img, result = preprocess_image(
        src,
        cfg.max_size,
        kind.geometry(model),
        None if cfg.allow_large else cfg.max_pixels,
        receptive_field=lambda size: kind.receptive_field(model, size),
    )
    with tracked("preprocess", image, params, None, f"The outputs are in {paths.processed.parent}.") as tracker:
        save_image(img, paths.processed)
        meta = result.to_dict()
        write_json(paths.processed_meta, meta)
        tracker.log_metrics(
            {
                "height": result.processed_size[0],
                "width": result.processed_size[1],
                "receptive_field_px": result.receptive_field_px,
                "receptive_field_fraction": result.receptive_field_fraction,
            }
        )
        tracker.log_image(img, key="input")
        tracker.log_image(img, key="input", parent=True)
    return meta
