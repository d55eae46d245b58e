"""``benchmark-compare``: arms of different benchmark runs side by side, on the images they share.

``benchmark-merge`` joins subsets of one command. A recipe change is usually measured in a run of
its own (yesterday's default in one ``--out``, today's change in another, on more or fewer
images); comparing them needs the chosen arms' rows from each run restricted to the images every
one of them has, so that every mean is over the same images, with the baselines' rows of the same
images, the per-image wins (:func:`.report.paired_rows`) and one contact sheet per image with every
chosen arm's samples. The result is written like a benchmark's (tables, plot, JSON, sheets).

A pick is ``[LABEL=]RUN[:ARM]``: ``RUN`` a finished benchmark's ``--out`` folder, ``ARM`` one of
its arms (default: all of them), ``LABEL`` the arm's name in the comparison (default: ``ARM``;
needed when two runs have an arm of the same name).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import ImagePaths
from ..stages.evaluate import sample_files
from .arms import natural_key
from .report import load_result, write_report
from .sheets import image_sheet


@dataclass(frozen=True)
class Pick:
    """One arm (or every arm, ``arm=None``) of the benchmark run in ``folder``, named ``label``."""

    folder: Path
    arm: str | None = None
    label: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.label + '=' if self.label else ''}{self.folder}{':' + self.arm if self.arm else ''}"


def parse_pick(spec: str) -> Pick:
    """``[LABEL=]RUN[:ARM]`` -> :class:`Pick`; ValueError naming the spec when malformed."""
    label, eq, rest = spec.partition("=")
    if not eq or "/" in label:  # a '=' inside the run's path is not a label
        label, eq, rest = "", "", spec
    folder, colon, arm = rest.rpartition(":")
    if not colon or "/" in arm:  # no arm given (a ':' inside the folder's path is not an arm)
        folder, colon, arm = rest, "", ""
    if not folder or (colon and not arm) or (eq and not label):
        raise ValueError(f"{spec!r}: expected [LABEL=]RUN[:ARM], e.g. minsnr=bench-train:unet-minsnr")
    if label and not arm:
        raise ValueError(f"{spec!r}: a LABEL names one arm; give it as LABEL=RUN:ARM")
    return Pick(Path(folder), arm or None, label or None)


def _arms_of(pick: Pick, result: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(label, arm)]`` the pick selects from its run."""
    arms = list(result["settings"].get("arms", {}))
    if pick.arm is None:
        return [(a, a) for a in arms]
    if pick.arm not in arms:
        raise ValueError(f"{pick.spec}: {pick.folder} has no arm {pick.arm!r}; its arms: {', '.join(arms) or 'none'}")
    return [(pick.label or pick.arm, pick.arm)]


def _size(row: dict) -> list[int] | None:
    """The size the row was scored at: an arm's training size, a baseline's resized size."""
    return row.get("train_size") or row.get("scored_size")


def compare_results(picks: Sequence[Pick], out: str | Path) -> dict[str, Any]:
    """Compare the picked arms on the images all of them have; write the report into ``out``.

    ValueError (naming the run or pick) when a run is missing or not a benchmark, a pick names an
    arm its run lacks, two picks share a name (with each other or with a baseline), the runs' metric
    columns differ, no image is shared, or an image was scored at different sizes (different
    ``preprocess.max_size``); nothing is written then.
    """
    if not picks:
        raise ValueError("benchmark-compare: give the arms to compare, as RUN:ARM or RUN (all its arms)")
    out = Path(out)
    results = {p.folder: load_result(p.folder) for p in picks}
    if any(out.resolve() == f.resolve() for f in results):
        raise ValueError(f"--out {out}: is one of the compared runs; its tables would be overwritten")
    chosen: list[tuple[str, Pick, str]] = []  # (label, pick, arm)
    for pick in picks:
        for label, arm in _arms_of(pick, results[pick.folder]):
            if any(label == c[0] for c in chosen):
                raise ValueError(
                    f"{pick.spec}: a second arm named {label!r}; "
                    f"name it with LABEL=RUN:ARM, e.g. new={pick.folder}:{arm}"
                )
            chosen.append((label, pick, arm))
    if len(chosen) < 2:
        raise ValueError(f"{picks[0].spec}: only one arm; compare at least two")
    first = results[picks[0].folder]
    for folder, res in results.items():
        if res["columns"] != first["columns"]:
            raise ValueError(f"{folder}: its metric columns differ from {picks[0].folder}'s (another evaluate section)")

    arm_rows = {
        label: {r["image"]: {**r, "method": label} for r in results[pick.folder]["rows"] if r["method"] == arm}
        for label, pick, arm in chosen
    }
    images = sorted(set.intersection(*(set(rows) for rows in arm_rows.values())), key=natural_key)
    if not images:
        raise ValueError(
            "benchmark-compare: no image has results in every chosen arm ("
            + "; ".join(
                f"{label}: {', '.join(sorted(rows, key=natural_key)) or 'none'}" for label, rows in arm_rows.items()
            )
            + ")"
        )
    sizes = {i: _size(arm_rows[chosen[0][0]][i]) for i in images}
    for label, pick, _ in chosen:
        for i in images:
            if (size := _size(arm_rows[label][i])) != sizes[i]:
                raise ValueError(
                    f"{pick.spec}: image {i} was scored at {size}, {chosen[0][0]} at {sizes[i]}; "
                    "only runs at one preprocess.max_size compare"
                )
    base_rows, baselines = _baseline_rows(results.values(), sizes)
    for label, pick, _ in chosen:
        if label in baselines:  # one method name would hold an arm's rows and a baseline's
            raise ValueError(
                f"{pick.spec}: {label!r} is also a baseline of the runs ({', '.join(baselines)}); "
                "give the arm another name with LABEL=RUN:ARM"
            )
    rows = [arm_rows[label][i] for label, _, _ in chosen for i in images] + base_rows
    dropped = sorted({i for rows_ in arm_rows.values() for i in rows_} - set(images), key=natural_key)
    settings = {
        **json.loads(json.dumps(first["settings"])),
        "arms": {
            label: {**results[pick.folder]["settings"]["arms"][arm], "run": str(pick.folder), "arm": arm}
            for label, pick, arm in chosen
        },
        "baselines_methods": baselines,
        "out": str(out),
        "compared": [p.spec for p in picks],
        "device": ", ".join(dict.fromkeys(str(r["settings"].get("device", "?")) for r in results.values())),
        "seconds": 0.0,
    }
    settings.pop("merged_from", None)
    result: dict[str, Any] = {
        "columns": first["columns"],
        "rows": rows,
        "settings": settings,
        "published": first.get("published") or [],
        "failures": {},
        "unavailable": {},
        "notes": [f"compared on the {len(images)} images every arm has"]
        + ([f"left out (not in every arm): {', '.join(dropped)}"] if dropped else []),
    }
    result["sheets"] = _sheets(result, [(label, arm_rows[label]) for label, _, _ in chosen], images, out)
    write_report(result, out)
    return result


def _baseline_rows(results: Iterable[dict[str, Any]], sizes: dict[str, Any]) -> tuple[list[dict], list[str]]:
    """The runs' baseline rows (methods that are not a run's arm) of the images in ``sizes``, scored
    at that size, each (method, image) from the first run that has it; and the methods, first seen first."""
    rows: list[dict] = []
    methods: list[str] = []
    taken: set[tuple[str, str]] = set()
    for res in results:
        for r in res["rows"]:
            key = (r["method"], r["image"])
            if r["method"] in res["settings"].get("arms", {}) or r["image"] not in sizes or key in taken:
                continue
            if _size(r) == sizes[r["image"]]:
                taken.add(key)
                rows.append(r)
                methods += [r["method"]] if r["method"] not in methods else []
    return rows, methods


def _sheets(
    result: dict[str, Any], arms: Sequence[tuple[str, dict[str, dict]]], images: Sequence[str], out: Path
) -> dict[str, str]:
    """One sheet per image from the samples on disk: the first arm's processed training image, 4
    samples per arm, the baselines. An image whose files have moved gets a note, not a sheet."""

    sheets: dict[str, str] = {}
    for image in images:
        samples = [(label, sample_files(rows[image]["source"])) for label, rows in arms]
        training = ImagePaths(image, Path(arms[0][1][image]["source"]).parent.parent).processed
        bases = [
            (r["method"], Path(r["source"]))
            for r in result["rows"]
            if r["image"] == image and r["method"] not in result["settings"]["arms"]
        ]
        missing = [label for label, files in samples if not files]
        missing += [f"{m} ({p})" for m, p in bases if not p.is_file()]
        if not training.is_file() or missing:
            result["notes"].append(f"sheet {image}: not drawn, files missing ({', '.join(missing) or training})")
            continue
        rel = f"sheets/{image}.png"
        image_sheet(image, training, samples, bases, out / rel)
        sheets[image] = rel
    return sheets
