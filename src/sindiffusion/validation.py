"""Small load-time checks for config dataclasses (``__post_init__``), free of any subsystem import.

A check raises :class:`FieldError`; :func:`sindiffusion.config.build_section` turns it into a
``ConfigError`` that names the file, the section and the key (``params.yaml: train.lr_warmup: ...``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, Union

#: The integers every key accepts at most: what torch and numpy take as a seed or a count
#: without wrapping (``seed: 2**64`` would silently be seed 0).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

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


# ---------------------------------------------------------------------------- declared rules
_TYPE_WORDS = {
    bool: "true/false",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a mapping",
    tuple: "a list",
}


@dataclass(frozen=True)
class Rule:
    """What one key accepts (derived from the annotation and :func:`opt` metadata)."""

    type: type
    """``bool``, ``int``, ``float``, ``str``, ``dict`` or ``tuple`` (a YAML list)."""
    optional: bool = False
    """``null`` is allowed."""
    choices_from: Choices | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    pattern: str | None = None
    min_len: int = 0
    item: Optional["Rule"] = None
    also: tuple[str, ...] = ()
    """Words accepted besides values of ``type`` (``Union[float, Literal["auto"]]``: ``auto``)."""
    help: str = ""

    @property
    def choices(self) -> tuple[str, ...] | None:
        if self.choices_from is None:
            return None
        return tuple(self.choices_from() if callable(self.choices_from) else self.choices_from)

    def allowed(self) -> str:
        """In words: ``"an integer >= 1 or null"``, ``"one of auto, fp32, bf16"``."""
        if self.choices is not None:
            text = "one of " + ", ".join(self.choices)
        elif self.type is tuple:
            text = "a list" + (f" of {self.item.allowed()}" if self.item else "")
            if self.min_len:
                text += f" with at least {self.min_len} item(s)"
        else:
            text = _TYPE_WORDS[self.type]
            bounds = [
                f"{op} {v:g}"
                for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                if v is not None
            ]
            text += (" " + " and ".join(bounds)) if bounds else ""
            if self.pattern:
                text += f" matching {self.pattern}"
            elif self.min_len and self.type is str:
                text = "a non-empty string"
        text += "".join(f" or {word}" for word in self.also)
        return text + (" or null" if self.optional else "")

    def check(self, value: Any, where: str, error: Callable[[str], Exception] = ValueError) -> Any:
        """``value`` converted (ints for floats, lists to tuples) or ``error`` naming ``where``."""
        if value is None:
            if self.optional:
                return None
            raise error(f"{where}: a value is required ({self.allowed()}), got null")
        if isinstance(value, str) and value in self.also:
            return value
        tp = self.type
        ok = (
            isinstance(value, bool)
            if tp is bool
            else isinstance(value, (int, float)) and not isinstance(value, bool)
            if tp is float
            else isinstance(value, int) and not isinstance(value, bool)
            if tp is int
            else isinstance(value, (list, tuple))
            if tp is tuple
            else isinstance(value, tp)
        )
        if not ok:
            # YAML turns unquoted 1 or 1.5 into numbers; where a string (a name) is wanted, say how to write one
            quote = tp is str and isinstance(value, (int, float)) and not isinstance(value, bool)
            raise error(
                f"{where}: expected {_TYPE_WORDS[tp]}, got {type(value).__name__} {value!r}"
                + (f"; allowed: {self.allowed()}" if self.choices is not None or self.also else "")
                + (f" (quote it in YAML: '{value}')" if quote else "")
            )
        if tp is float:
            value = float(value)
            if not math.isfinite(value):  # NaN passes every comparison below, inf every lower bound
                raise error(f"{where}: must be a finite number, got {value!r}; allowed: {self.allowed()}")
        if tp is int and not INT64_MIN <= value <= INT64_MAX:  # torch and numpy would wrap it (2**64 -> 0)
            raise error(f"{where}: {value!r} does not fit in 64 bits (at most {INT64_MAX}); allowed: {self.allowed()}")
        if tp is tuple:
            if len(value) < self.min_len:
                raise error(f"{where}: {list(value)!r} is too short; allowed: {self.allowed()}")
            if self.item is not None:
                value = tuple(self.item.check(v, f"{where}[{i}]", error) for i, v in enumerate(value))
            return tuple(value)
        choices = self.choices
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(str(value), list(choices), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise error(f"{where}: {value!r} is not allowed{hint}; choose one of {', '.join(choices)}")
        if tp is str and len(value) < self.min_len:
            raise error(f"{where}: is empty; allowed: {self.allowed()}")
        if tp is str and self.pattern and not re.fullmatch(self.pattern, value):
            raise error(f"{where}: {value!r} is not allowed; expected {self.allowed()}")
        for bound, bad, word in (
            (self.ge, lambda v, b: v < b, ">="),
            (self.gt, lambda v, b: v <= b, ">"),
            (self.le, lambda v, b: v > b, "<="),
            (self.lt, lambda v, b: v >= b, "<"),
        ):
            if bound is not None and bad(value, bound):
                raise error(f"{where}: must be {word} {bound:g}, got {value!r}")
        return value


def _rule(tp: Any, meta: Mapping[str, Any]) -> Rule:
    optional, also = False, ()
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        optional = type(None) in args
        words = [a for a in args if typing.get_origin(a) is Literal]
        also = tuple(w for a in words for w in typing.get_args(a))
        also += tuple(meta.get("also") or ())
        types_ = [a for a in args if a is not type(None) and a not in words]
        tp = next((a for a in types_ if a is not str), types_[0]) if len(types_) > 1 else types_[0]
        origin = typing.get_origin(tp)
    choices = meta.get("choices")
    if origin is Literal:
        choices, tp = tuple(typing.get_args(tp)), str
    item = None
    if origin is tuple:
        item = _rule(typing.get_args(tp)[0], meta.get("item") or {})
        tp = tuple
    elif origin is dict or tp is dict:
        tp = dict
    if tp not in _TYPE_WORDS:
        raise TypeError(f"unsupported config type {tp!r}")
    return Rule(
        type=tp,
        optional=optional,
        choices_from=choices,
        ge=meta.get("ge"),
        gt=meta.get("gt"),
        le=meta.get("le"),
        lt=meta.get("lt"),
        pattern=meta.get("pattern"),
        min_len=meta.get("min_len") or 0,
        item=item,
        also=also,
        help=meta.get("help") or "",
    )


@functools.cache
def field_rules(cls: type) -> dict[str, Rule]:
    """``{key: Rule}`` of a config dataclass, in field order."""
    hints = typing.get_type_hints(cls)
    return {f.name: _rule(hints[f.name], f.metadata.get("rule") or {}) for f in dataclasses.fields(cls)}


def check_fields(obj: Any, where: str) -> None:
    """Check every field of the dataclass instance ``obj`` against its declared rule (:func:`opt`).

    For dataclasses built directly rather than by :func:`sindiffusion.config.build_section` (which
    checks the same rules on the raw values first): call it from ``__post_init__``. Raises
    :class:`FieldError` naming the key; its message says ``<where>.<key>: ...``.
    """
    for key, rule in field_rules(type(obj)).items():
        rule.check(getattr(obj, key), f"{where}.{key}", lambda message, key=key: FieldError(key, message))
