"""The registry of edit kinds, :data:`APPLICATIONS`, in a module of its own: ``applications/config.py``
(which validates an edit's options by its kind) and ``applications/base.py`` (the :class:`Application`
class every kind subclasses) both read it, and neither imports the other's module for it."""

from __future__ import annotations

from ..registry import Registry, import_submodules

#: Edit kind -> application class (one module each in :mod:`sindiffusion.applications.kinds`, imported
#: when the registry is first read).
APPLICATIONS: Registry[type] = Registry("kind", load=lambda: import_submodules("sindiffusion.applications.kinds"))
