"""Where the pretrained backbones of the deep metrics live.

:data:`WEIGHTS` is the catalogue of checkpoint files; each metric of the registry
(:mod:`.registry`) names the ones it needs, and a file's ``used_by`` is derived
from that. The LPIPS linear layers ship inside the ``lpips`` wheel and need no
download. The files are looked up, never downloaded implicitly:

* in ``weights_dir`` when one is given (and only there), else
* in the torch hub cache, ``torch.hub.get_dir() / "checkpoints"``, i.e.
  ``$TORCH_HOME/hub/checkpoints/`` (default ``~/.cache/torch/hub/checkpoints/``),
  the place torchvision itself would download them to.

A missing file raises :class:`MissingWeightsError`, whose message names the
file, its URL and the exact path where it must be put. :func:`fetch_weights`
downloads them explicitly (for a ``sindiffusion weights fetch`` command).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..artifacts import sha256_file
from .registry import metrics

__all__ = [
    "WEIGHTS",
    "BadWeightsError",
    "MissingWeightsError",
    "WeightSpec",
    "default_weights_dir",
    "fetch_weights",
    "find_weights",
    "verify_weights",
    "weights_path",
    "weights_status",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightSpec:
    """One downloadable checkpoint.

    ``hash_prefix`` is the first hex digits of the file's SHA-256, as encoded in
    torchvision's file names (``torch.hub`` checks it on download).
    """

    name: str
    filename: str
    url: str
    hash_prefix: str
    network: str
    """What the file holds, e.g. ``"torchvision ImageNet AlexNet backbone"``."""

    @property
    def used_by(self) -> str:
        """``"<metric titles> (<network>)"``: the registered metrics that declare this file."""
        titles = [m.title for m in metrics() if self.name in m.weights]
        return f"{' and '.join(titles) or 'no registered metric'} ({self.network})"


#: Where torchvision serves its checkpoints.
TORCHVISION_MODELS = "https://download.pytorch.org/models/"


def torchvision_weights(name: str, filename: str, network: str) -> WeightSpec:
    """A torchvision checkpoint: its URL is :data:`TORCHVISION_MODELS` + ``filename``, and its hash
    prefix the part of ``filename`` after the last ``-`` (``alexnet-owt-7be5be79.pth`` -> ``7be5be79``)."""
    prefix = filename.rsplit("-", 1)[1].removesuffix(".pth")
    return WeightSpec(name, filename, TORCHVISION_MODELS + filename, prefix, network)


WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        torchvision_weights("inception_v3", "inception_v3_google-0cc3c7c2.pth", "torchvision ImageNet Inception-v3"),
        torchvision_weights("alexnet", "alexnet-owt-7be5be79.pth", "torchvision ImageNet AlexNet backbone"),
    )
}


class MissingWeightsError(RuntimeError):
    """A pretrained checkpoint needed by a deep metric is not on disk."""

    def __init__(self, spec: WeightSpec, expected: Path) -> None:
        self.spec = spec
        self.expected = expected
        super().__init__(
            f"missing weights {spec.filename!r} for {spec.used_by}: "
            f"download {spec.url} and put it at {expected} "
            f"(or run `sindiffusion weights fetch`)"
        )


class BadWeightsError(MissingWeightsError):
    """A checkpoint file is present but is not the published one (its SHA-256 does not match)."""

    def __init__(self, spec: WeightSpec, expected: Path, digest: str) -> None:
        self.spec = spec
        self.expected = expected
        self.digest = digest
        RuntimeError.__init__(
            self,
            f"weights {expected} for {spec.used_by} are not the published file: SHA-256 {digest[:16]}... "
            f"does not start with {spec.hash_prefix!r}; delete it and download {spec.url} again "
            f"(or run `sindiffusion weights fetch --force`)",
        )


def _spec(name: str) -> WeightSpec:
    try:
        return WEIGHTS[name]
    except KeyError:
        raise KeyError(f"unknown weights {name!r}; known: {sorted(WEIGHTS)}") from None


def default_weights_dir() -> Path:
    """The torch hub checkpoint cache, ``torch.hub.get_dir()/checkpoints``.

    Read at call time, so it follows ``$TORCH_HOME``.
    """
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_path(name: str, weights_dir: str | Path | None = None) -> Path:
    """The exact path where checkpoint ``name`` is expected (it may not exist)."""
    root = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    return root / _spec(name).filename


def find_weights(name: str, weights_dir: str | Path | None = None) -> Path:
    """Return the path of checkpoint ``name`` (``"inception_v3"`` or ``"alexnet"``).

    Looks only in ``weights_dir`` when given, else in the torch hub cache.

    Raises:
        MissingWeightsError: the file is absent; the message names the file,
            the URL and the exact path where it must be put.
    """
    path = weights_path(name, weights_dir)
    if not path.is_file():
        raise MissingWeightsError(_spec(name), path)
    return path


def fetch_weights(
    names: Iterable[str] | None = None,
    weights_dir: str | Path | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    downloader: Callable[..., None] | None = None,
) -> dict[str, Path]:
    """Download checkpoints (all of :data:`WEIGHTS` when ``names`` is None).

    Uses ``torch.hub.download_url_to_file`` (which writes to a temporary file,
    checks the SHA-256 prefix and moves it into place). Files already present
    are kept unless ``force``. ``downloader`` replaces the download function
    (same signature as ``download_url_to_file``; for tests).

    Returns:
        ``{name: path}`` for every requested checkpoint.
    """
    download = downloader if downloader is not None else torch.hub.download_url_to_file
    out: dict[str, Path] = {}
    for name in list(WEIGHTS) if names is None else list(names):
        spec = _spec(name)
        dst = weights_path(name, weights_dir)
        if dst.is_file() and not force:
            log.info("weights %s already at %s", spec.filename, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            log.info("downloading %s to %s", spec.url, dst)
            download(spec.url, str(dst), hash_prefix=spec.hash_prefix, progress=progress)
            if not dst.is_file():
                raise MissingWeightsError(spec, dst)
        out[name] = dst
    return out


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_file(path)
    return _HASH_CACHE[key]


def verify_weights(name: str, weights_dir: str | Path | None = None) -> Path:
    """Like :func:`find_weights`, and also check the file's SHA-256 against the prefix that
    torchvision encodes in its file name (what ``torch.hub`` checks on download).

    A wrongly named or corrupt file would otherwise load (or fail) as if it were the
    pretrained network; a file with the right name but other values would give numbers
    from a non-pretrained backbone. Hashes are cached per (path, size, mtime).

    Raises:
        MissingWeightsError: the file is absent.
        BadWeightsError: the file is present but its hash does not match.
    """
    path = find_weights(name, weights_dir)
    digest = _sha256(path)
    spec = _spec(name)
    if not digest.startswith(spec.hash_prefix):
        raise BadWeightsError(spec, path, digest)
    return path


def weights_status(weights_dir: str | Path | None = None, *, verify: bool = False) -> list[dict[str, object]]:
    """Where each checkpoint is expected and whether it is there.

    Returns one dict per entry of :data:`WEIGHTS`: ``name``, ``file``, ``url``, ``path``,
    ``used_by``, ``present`` (bool), ``size`` (bytes or None) and, with ``verify``,
    ``hash_ok`` (bool or None when absent).
    """
    rows: list[dict[str, object]] = []
    for name, spec in WEIGHTS.items():
        path = weights_path(name, weights_dir)
        present = path.is_file()
        row: dict[str, object] = {
            "name": name,
            "file": spec.filename,
            "url": spec.url,
            "path": str(path),
            "used_by": spec.used_by,
            "present": present,
            "size": path.stat().st_size if present else None,
        }
        if verify:
            row["hash_ok"] = _sha256(path).startswith(spec.hash_prefix) if present else None
        rows.append(row)
    return rows
