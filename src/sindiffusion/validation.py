"""Small load-time checks for config dataclasses (``__post_init__``), free of any subsystem import.

A check raises :class:`FieldError`; :func:`sindiffusion.config.build_section` turns it into a
``ConfigError`` that names the file, the section and the key (``params.yaml: train.lr_warmup: ...``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any, Callable, Sequence, Union

#: ``choices`` of a key: names, or a callable returning them (e.g. a registry's ``names``).
Choices = Union[Sequence[str], Callable[[], Sequence[str]]]


class FieldError(ValueError):
    """A bad value of one key of a section; ``key`` is the key's name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def check_choice(key: str, value: Any, choices: Sequence[Any]) -> None:
    """``value`` must be one of ``choices`` (bools compared as bools, not as 0/1)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        shown = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices)
        raise FieldError(key, f"expected one of {shown}; got {value!r}")


def check_range(
    key: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """``low <(=) value <(=) high`` (either bound may be None), and finite."""
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'(' if low_open else '['}{low}"
        hi = "" if high is None else f"{high}{')' if high_open else ']'}"
        interval = f"{lo or '(-inf'}, {hi or 'inf)'}"
        raise FieldError(key, f"must be in {interval}; got {value!r}")


def opt(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Choices | None = None,
    pattern: str | None = None,
    min_len: int = 0,
    item: dict[str, Any] | None = None,
    also: Sequence[str] = (),
    help: str = "",
) -> Any:
    """A dataclass field with its rule: bounds (``ge``/``gt``/``le``/``lt``), ``choices`` (names, or
    a callable returning them, e.g. a registry's ``names``), a regex ``pattern``, a minimum length
    (strings, lists), ``item`` (the same keywords for the items of a list) and ``also`` (words accepted
    besides values of the type, for a ``Union[number or bool, str]``)."""
    meta = {
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "choices": choices,
        "pattern": pattern,
        "min_len": min_len,
        "item": item,
        "also": tuple(also),
        "help": help,
    }
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"rule": meta})
    return field(default=default, metadata={"rule": meta})
