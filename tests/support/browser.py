"""Headless Chromium screenshots (Debian's ``/usr/bin/chromium``).

Usage::

    from tests.support.browser import screenshot, chromium_available, mlflow_run_url

    png = screenshot(mlflow_run_url(uri, exp_id, run_id, "model-metrics"), out_dir / "run.png")
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Optional

__all__ = [
    "screenshot",
    "chromium_available",
    "chromium_path",
    "mlflow_run_url",
    "png_is_blank",
    "page_text",
    "MLFLOW_UI_WAIT_MS",
]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: Virtual-time budget that was enough for MLflow 3.17's UI to fetch the run,
#: render the image grid and load the images (see :func:`mlflow_run_url`).
MLFLOW_UI_WAIT_MS = 15000


def chromium_path() -> Optional[str]:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    for c in _CANDIDATES:
        p = shutil.which(c)
        if p:
            return p
    return None


def chromium_available() -> tuple[bool, str]:
    """``(True, "")`` when headless Chromium can run, else ``(False, reason)``."""
    exe = chromium_path()
    if exe is None:
        return False, "chromium not installed (run `sudo .ci/install-system.sh`)"
    try:
        res = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"chromium does not run: {e}"
    if res.returncode != 0:
        return False, f"chromium --version failed: {res.stderr.strip()[:200]}"
    return True, ""


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str, tab: str = "") -> str:
    """URL of a run's page in the MLflow 3 UI (a React single-page app, hash routes).

    ``tab`` (verified with MLflow 3.17):

    - ``"model-metrics"``: the run's charts, including the image grid of
      ``mlflow.log_image(img, key="samples", step=0)`` (a "samples" card
      with a step slider) next to the metric plots. **Use this for images.**
    - ``"artifacts/grid.png"``: the artifact browser with ``grid.png``
      selected and previewed. (Plain ``"artifacts"`` shows only the file tree
      and "Select a file to preview".)
    - ``""``: the overview (run info, metric/param tables; no images).
    """
    base = tracking_uri.rstrip("/")
    url = f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    if tab:
        url += "/" + tab.lstrip("/")
    return url


def screenshot(
    url: str,
    out_png: os.PathLike | str,
    width: int = 1400,
    height: int = 1000,
    wait_ms: int = MLFLOW_UI_WAIT_MS,
    timeout_s: float = 120.0,
    ready: Optional[Callable[[Path], bool]] = None,
    attempts: int = 3,
) -> Path:
    """Screenshot ``url`` with headless Chromium into ``out_png``; return its path.

    ``wait_ms`` is Chromium's ``--virtual-time-budget``: virtual time that
    lets the page's timers and fetches settle before the capture (it costs
    far less wall time: ~2-3 s per shot here). If ``ready`` is given it is
    called with the PNG and the shot is retried (``attempts`` times in all,
    doubling ``wait_ms``) until it returns True; the last PNG is returned
    either way, so check it yourself.

    MLflow UI (verified with MLflow 3.17.2, Chromium 156, 1400x1000): the
    image logged with ``mlflow.log_image(img, key="samples", step=0)`` is
    shown by the run's *Model metrics* tab::

        http://127.0.0.1:<port>/#/experiments/<experiment_id>/runs/<run_id>/model-metrics

    and an artifact file ``grid.png`` by::

        http://127.0.0.1:<port>/#/experiments/<experiment_id>/runs/<run_id>/artifacts/grid.png

    (build both with :func:`mlflow_run_url`). The run overview
    ``.../runs/<run_id>`` shows no images. ``wait_ms=15000`` rendered the
    image card in 13 of 13 tries with ``--run-all-compositor-stages-before-draw``
    (without that flag about 1 in 10 shots caught the chart spinners).
    """
    exe = chromium_path()
    if exe is None:
        raise RuntimeError("chromium not installed (run `sudo .ci/install-system.sh`)")
    out = Path(out_png).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    budget = int(wait_ms)
    for _ in range(max(1, attempts)):
        _shoot(exe, url, out, width, height, budget, timeout_s)
        if ready is None or ready(out):
            break
        budget *= 2
    return out


def _argv(exe: str, profile: str, wait_ms: int) -> list[str]:
    return [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--run-all-compositor-stages-before-draw",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={int(wait_ms)}",
    ]


def _shoot(exe: str, url: str, out: Path, width: int, height: int, wait_ms: int, timeout_s: float) -> None:
    if out.exists():
        out.unlink()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        argv = [*_argv(exe, profile, wait_ms), f"--screenshot={out}", f"--window-size={int(width)},{int(height)}", url]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot (rc={res.returncode}):\n{res.stderr[-2000:]}")


def page_text(url: str, wait_ms: int = MLFLOW_UI_WAIT_MS, timeout_s: float = 120.0) -> str:
    """The visible text of ``url`` after its scripts ran (Chromium ``--dump-dom``; tags, scripts and
    styles removed, whitespace collapsed): lets a test assert what a screenshot shows."""
    import html
    import re

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("chromium not installed (run `sudo .ci/install-system.sh`)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        res = subprocess.run(
            [*_argv(exe, profile, wait_ms), "--dump-dom", url], capture_output=True, text=True, timeout=timeout_s
        )
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", res.stdout, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom))).strip()


def png_is_blank(png: os.PathLike | str, min_colors: int = 16) -> bool:
    """True if the image is (almost) one colour, e.g. an empty white page."""
    from PIL import Image

    with Image.open(png) as im:
        im = im.convert("RGB")
        colors = im.getcolors(maxcolors=1 << 20)
    return colors is not None and len(colors) < min_colors


def colors_present(png: os.PathLike | str, colors) -> float:
    """Fraction of the RGB ``colors`` that occur exactly somewhere in ``png``.

    Handy to check that a screenshot really shows a logged image: log an image
    made of flat blocks of distinct colours, then require most of them here
    (block interiors keep their exact colour when the UI scales the image).
    """
    from PIL import Image

    wanted = {tuple(int(v) for v in c[:3]) for c in colors}
    if not wanted:
        return 1.0
    with Image.open(png) as im:
        found = {c for _, c in (im.convert("RGB").getcolors(maxcolors=1 << 24) or [])}
    return len(wanted & found) / len(wanted)
