"""One registry pattern for every pluggable kind of thing (samplers, applications, metrics, model kinds).

A registry maps a name to an item (a class or a function). Modules register their items at import
time with the decorator; the package that owns a registry imports its modules once (see
:func:`import_submodules`), so adding an item is adding one module. Everything that lists names
(the config's allowed choices, the JSON schema's enums, CLI subcommands, docs tables) asks the
registry instead of spelling the names again.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """``name -> item``, in registration order; unknown names raise ``KeyError`` with a did-you-mean hint."""

    def __init__(self, what: str, load: Callable[[], None] | None = None) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._load = load
        self._loaded = load is None

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("ddim")``; a name may be registered once."""

        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plug-in or test that registered it for a while); unknown names are ignored."""
        self._items.pop(name, None)

    def view(self, attr: Callable[[T], Any]) -> Mapping[str, Any]:
        """A read-only, live ``name -> attr(item)`` mapping (e.g. a kind table of options dataclasses):
        items registered later show up in it."""
        return _View(self, attr)

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            assert self._load is not None
            self._load()

    def names(self) -> tuple[str, ...]:
        self._ensure_loaded()
        return tuple(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._ensure_loaded()
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> T:
        """The item called ``name``; ``KeyError`` naming the allowed names otherwise."""
        self._ensure_loaded()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(self.unknown(name)) from None

    def unknown(self, name: object) -> str:
        """``"unknown sampler 'ddmi' (did you mean 'ddim'?); choose one of ddpm, ddim"``."""
        close = difflib.get_close_matches(str(name), list(self._items), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.what} {name!r}{hint}; choose one of {', '.join(self._items)}"


class _View(Mapping):
    """:meth:`Registry.view`."""

    def __init__(self, registry: Registry, attr: Callable[[Any], Any]) -> None:
        self._registry, self._attr = registry, attr

    def __getitem__(self, name: str) -> Any:
        return self._attr(self._registry.get(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names())

    def __len__(self) -> int:
        return len(self._registry)


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (its items register themselves)."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
