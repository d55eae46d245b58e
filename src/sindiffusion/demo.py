"""The default demo image, obtained from a package we depend on (no download, free to use).

scikit-image ships ``hubble_deep_field.jpg`` (NASA/ESA Hubble Deep Field, public domain) in its
wheel; it is a natural image full of small repeated structures, a good single-image texture.
"""

from __future__ import annotations

import shutil
from pathlib import Path

DEMO_NAME = "hubble"


def demo_source() -> Path:
    # why: scikit-image is heavy and only the demo image needs it
    import skimage

    path = Path(skimage.__file__).parent / "data" / "hubble_deep_field.jpg"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scikit-image's bundled demo image is missing; reinstall scikit-image")
    return path


def install_demo_image(images_dir: str | Path = "data/images") -> Path:
    """Copy the demo image byte-for-byte to ``<images_dir>/hubble.jpg`` (idempotent)."""
    dest = Path(images_dir) / f"{DEMO_NAME}.jpg"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(demo_source(), tmp)
        tmp.replace(dest)
    return dest
