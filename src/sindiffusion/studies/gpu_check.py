"""The parts of ``scripts/gpu-check.sh`` that run Python, one process per part::

    python -m sindiffusion.cli.gpu_check env    OUT [--cpu-smoke]
    python -m sindiffusion.cli.gpu_check config OUT NAME PARAMS IMAGE --minutes M --num N [--set k=v ...]
                                                  [--sweep KEY=V1,V2,... ...]
    python -m sindiffusion.cli.gpu_check patch  OUT IMAGE --size 1024 [--set k=v ...]
    python -m sindiffusion.cli.gpu_check merge  OUT

(the parser is :mod:`sindiffusion.cli.gpu_check`). Every part writes ``OUT/parts/<name>.json`` as it
goes (``status`` = running / ok / failed / skipped) and ``merge`` joins them into ``OUT/gpu-check.json``,
so a part killed by its time limit still leaves what it measured. A ``config`` part trains one params file
for ``--minutes`` of wall-clock time (``train.max_minutes``) on one image, draws ``--num`` samples, scores them with
the weight-free metrics and the brightness check, records peak GPU memory of training and
sampling, and writes the contact sheet ``OUT/sheets/<name>.png`` (training image + samples).
``--sweep KEY=V1,V2,...`` then samples the same trained model once per value (e.g.
``sample.init_t=0.5,0.6,0.7,0.8``, the diversity knob, which a GPU-trained model needs set higher
than a CPU-trained one: docs/gpu-check.md), scores each into ``sweep`` and adds one sheet row each;
``--sweep`` may be repeated (``sample.scale_w=2``: the same model 2x wide, with the params file's
``sample.init``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from ..paths import ImagePaths

PARTS = "parts"


def _dump(path: Path, data: Any) -> None:
    """Atomic JSON without importing torch (``merge``/``mark`` run in a bare interpreter in seconds);
    NaN/inf become null."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(clean(data), indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def _write(out: Path, name: str, part: dict[str, Any]) -> None:
    _dump(out / PARTS / f"{name}.json", part)


def _peak_gib(device: Any) -> float | None:
    # why: merge and mark run in a bare interpreter in seconds: torch and the stages only in the parts that train
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def _reset_peak(device: Any) -> None:
    # why: merge and mark run in a bare interpreter in seconds: torch and the stages only in the parts that train
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def part_env(out: Path, cpu_smoke: bool) -> dict[str, Any]:
    """Versions and the device: what the numbers of the other parts were measured on."""
    # why: merge and mark run in a bare interpreter in seconds: torch and the stages only in the parts that train
    import torch

    # why: merge and mark run in a bare interpreter in seconds: torch and the stages only in the parts that train
    from ..runtime import cpu_bf16_flags

    env: dict[str, Any] = {
        "status": "ok",
        "mode": "cpu-smoke" if cpu_smoke else "gpu",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "platform": platform.platform(),
        "cpu_bf16_flags": list(cpu_bf16_flags()),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu=props.name,
            gpu_memory_gib=props.total_memory / 2**30,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    _write(out, "env", env)
    return env


def _params(params_path: str, overrides: list[str], image: Path, results: Path) -> Any:
    # why: merge and mark run in a bare interpreter in seconds: torch and the stages only in the parts that train
    from ..config import load_params

    params = load_params(params_path, overrides)
    params.raw["data"] = {"images_dir": str(image.parent), "results_dir": str(results), "images": []}
    params.raw["tracking"] = {**(params.raw.get("tracking") or {}), "enabled": False}
    for section in ("data", "preprocess", "model", "diffusion", "train", "sample", "evaluate"):
        params.section(section)
    return params


def _guarded(out: Path, name: str, part: dict[str, Any], body: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run ``body(part)``; the part file says ``failed`` with the error if it raises."""
    part["status"] = "running"
    _write(out, name, part)
    try:
        body(part)
        part["status"] = "ok"
    except Exception as err:  # a part reports its failure in the JSON; the script goes on
        part.update(status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc()[-4000:])
    _write(out, name, part)
    return part


def part_config(
    out: Path,
    name: str,
    params_path: str,
    image: Path,
    minutes: float,
    num: int,
    overrides: list[str],
    metrics: bool = True,
    sweep: list[str] = (),
) -> dict[str, Any]:
    """Train ``params_path`` for ``minutes`` on ``image``, sample ``num``, score, sheet (see the module
    docstring); then, per override in ``sweep`` (``section.key=value``), sample and score again."""
    part: dict[str, Any] = {"params": params_path, "image": str(image), "minutes": minutes, "overrides": overrides}

    def body(part: dict[str, Any]) -> None:
        # why: merge and mark run in a bare interpreter in seconds: torch and the stages only in the parts that train
        from ..benchmark.per_image import brightness_stats, load_samples
        from ..benchmark.sheets import contact_sheet
        from ..runtime import resolve_device
        from ..stages import preprocess, sample, train
        from ..stages.evaluate import compute, load_unit

        over = [
            *overrides,
            f"train.max_minutes={minutes:g}",
            f"sample.num_samples={num}",
            f"sample.batch_size={num}",
            "evaluate.deep=false",
        ]
        results = out / "runs" / name
        params = _params(params_path, over, image, results)
        img = image.stem
        device = resolve_device(params.section("train").device)
        part["settings"] = {s: params.section_dict(s) for s in ("preprocess", "model", "diffusion", "train", "sample")}
        preprocess.run(params, img)
        _reset_peak(device)
        part["train"] = train.run(params, img, progress=False)
        part["train"]["peak_memory_gib"] = _peak_gib(device)
        _write(out, name, part)
        _reset_peak(device)
        t0 = time.perf_counter()
        meta = sample.run(params, img, progress=False)
        part["sample"] = {
            k: meta[k]
            for k in (
                "size",
                "sample_seconds",
                "seconds_per_sample",
                "seconds_per_step",
                "sampler",
                "steps",
                "num_samples",
                "clip_x0",
            )
            if k in meta
        }
        part["sample"].update(stage_seconds=time.perf_counter() - t0, peak_memory_gib=_peak_gib(device))
        _write(out, name, part)
        if metrics:
            paths = ImagePaths(img, results)
            real = load_unit(paths.processed)

            def score(folder: Path) -> dict[str, float]:
                fakes = load_samples(folder)
                scores = compute(params, real, fakes, deep=False)
                kept = {k: v for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                return {**kept, **brightness_stats(real, fakes)}

            part["metrics"] = score(paths.samples)
            rows = [(f"training {img}", [paths.processed]), (name, sorted(paths.samples.glob("sample_*.png")))]
            part["sweep"] = []
            for override in sweep:  # the same model, sampled once per value; each into its own folder
                folder = results / "sweep" / override.replace("=", "-")
                meta = sample.run(
                    _params(params_path, [*over, override], image, results), img, out_dir=folder, progress=False
                )
                part["sweep"].append(
                    {"override": override, "sample_seconds": meta.get("sample_seconds"), "metrics": score(folder)}
                )
                rows.append((override, sorted(folder.glob("sample_*.png"))))
                _write(out, name, part)
            sheet = out / "sheets" / f"{name}.png"
            contact_sheet(rows, sheet)
            part["sheet"] = str(sheet)

    return _guarded(out, name, part, body)


def patch_kind_known() -> str | None:
    """None when the model kind ``patch`` is registered on this checkout, else why the patch step is skipped."""
    # why: merge and mark run in a bare interpreter in seconds: torch and the stages only in the parts that train
    from ..config import MODEL_KINDS

    if "patch" not in MODEL_KINDS.names():
        return "model.kind: patch is not registered on this checkout (issue 11 not landed)"
    return None


def part_patch(out: Path, image: Path, size: int, params_path: str, overrides: list[str]) -> dict[str, Any]:
    """OPTIONAL: one ``size`` x ``size`` sample of the training-free patch model (``params_path``, by
    default configs/patch.yaml) with ``overrides``, timed; skipped when the kind is unknown."""
    reason = patch_kind_known()
    if reason is not None:
        part = {"status": "skipped", "reason": reason}
        _write(out, "patch", part)
        return part
    over = [*overrides, f"sample.height={size}", f"sample.width={size}"]
    return part_config(out, "patch", params_path, image, minutes=10.0, num=1, overrides=over, metrics=False)


def mark(out: Path, name: str, rc: int, seconds: float, raw_json: Path | None = None) -> dict[str, Any]:
    """After a part's process ended: record its exit code and wall time; a part still ``running``
    was killed (``timeout`` for exit 124/137, else ``failed``); ``raw_json`` (a command's own JSON
    output, e.g. benchmark-speed's) is embedded as ``result``."""
    path = out / PARTS / f"{name}.json"
    part = json.loads(path.read_text()) if path.is_file() else {}
    if raw_json is not None and raw_json.is_file():
        part["result"] = json.loads(raw_json.read_text())
    if part.get("status") in (None, "running"):
        part["status"] = "ok" if rc == 0 else ("timeout" if rc in (124, 137) else "failed")
    part.update(exit_code=rc, wall_seconds=round(seconds, 1))
    _write(out, name, part)
    return part


def merge(out: Path) -> dict[str, Any]:
    """``OUT/parts/*.json`` -> ``OUT/gpu-check.json`` (``parts`` by name, env first)."""
    parts = {p.stem: json.loads(p.read_text()) for p in sorted((out / PARTS).glob("*.json"))}
    status = {k: v.get("status") for k, v in parts.items()}
    result = {
        "format": "sindiffusion-gpu-check",
        "version": 1,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": status,
        **({"env": parts.pop("env")} if "env" in parts else {}),
        "parts": parts,
    }
    _dump(out / "gpu-check.json", result)
    return result
