"""Run a function right after a module is first imported (or at once, if it already is).

`dhaga.monkey` patches database drivers and frameworks this way, so ``patch_all()`` never
imports them itself. A finder at the front of ``sys.meta_path`` answers only for the names
that have hooks waiting, wrapping the real loader's ``exec_module``. This module must not
know what the hooks do.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, Callable

__all__ = ["when_imported"]

_pending: dict[str, list[Callable[[types.ModuleType], None]]] = {}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs the hooks registered for a module right after the module is executed."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_patch(module: types.ModuleType) -> None:
            exec_module(module)
            for hook in _pending.pop(name, []):
                hook(module)

        # A per-spec loader wrapper: the loader object itself is shared by other modules.
        spec.loader = _LoaderProxy(loader, exec_then_patch)
        return spec


class _LoaderProxy(importlib.abc.Loader):
    def __init__(self, loader: Any, exec_module: Callable[[types.ModuleType], None]) -> None:
        self._loader = loader
        self.exec_module = exec_module  # type: ignore[method-assign]

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


_finder = _AfterImport()


def when_imported(name: str, hook: Callable[[types.ModuleType], None]) -> None:
    """Call ``hook(module)`` now if ``name`` is imported, else right after it first is."""
    module = sys.modules.get(name)
    if module is not None:
        hook(module)
        return
    _pending.setdefault(name, []).append(hook)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
