"""Dhaga-backed ``threading`` and ``queue`` for `dhaga.monkey` (patched by default).

What changes: ``threading.Lock``, ``RLock``, ``Event``, ``Condition``, ``Semaphore``,
``BoundedSemaphore`` become `dhaga.sync`'s (which also work between real threads);
``threading.Thread`` becomes a class whose ``start()`` spawns a dhaga; ``threading.local``
keeps one namespace per dhaga; ``queue.Queue``, ``LifoQueue``, ``PriorityQueue`` and
``SimpleQueue`` become `dhaga.sync`'s.

Caveats (also in docs/monkey-patching.md): ``threading.current_thread()``, ``get_ident()`` and
``enumerate()`` still describe OS threads (a green ``Thread`` is not listed; locks and
libraries that key on the thread ident see one identity per OS thread); classes that subclassed ``threading.Thread`` before
patching, and ``threading.Timer``, still make real threads; ``concurrent.futures`` and dhaga's
own internals keep the real modules (`dhaga.to_thread` needs real threads).

This module builds the replacements and hands them to the setter `dhaga.monkey` passes in; it
decides nothing about when to patch.
"""

from __future__ import annotations

import queue as _queue
import sys
import threading as _threading
import types
import weakref
from typing import Any, Callable

from .. import scheduler as _scheduler
from .. import sync as _sync

__all__ = ["Thread", "local", "patch_threading", "patch_queue"]

_RealThread = _threading.Thread
_real_get_ident = _threading.get_ident


class Thread(_RealThread):
    """``threading.Thread`` whose ``start()`` runs ``run()`` in a dhaga, not an OS thread."""

    _dhaga: Any = None

    def start(self) -> None:
        if not self._initialized:  # type: ignore[attr-defined]
            raise RuntimeError("thread.__init__() not called")
        if self._dhaga is not None:
            raise RuntimeError("threads can only be started once")
        self._dhaga = _scheduler.spawn(self._run_green)
        self._dhaga.name = self.name

    def _run_green(self) -> None:
        self._ident = id(self._dhaga)
        self._started.set()  # type: ignore[attr-defined]
        try:
            self.run()
        except SystemExit:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported like an OS thread's failure
            _threading.excepthook(_threading.ExceptHookArgs((type(exc), exc, exc.__traceback__, self)))

    def join(self, timeout: float | None = None) -> None:
        if self._dhaga is None:
            raise RuntimeError("cannot join thread before it is started")
        if self._dhaga is _scheduler.current():
            raise RuntimeError("cannot join current thread")
        self._dhaga.join(timeout)

    def is_alive(self) -> bool:
        return self._dhaga is not None and not self._dhaga.done()


class local:  # noqa: N801 - the standard library's name
    """``threading.local`` with one namespace per dhaga (per OS thread outside dhagas)."""

    __slots__ = ("_dl_args", "_dl_dicts", "__weakref__")

    def __new__(cls, *args: Any, **kw: Any) -> local:
        if (args or kw) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        object.__setattr__(self, "_dl_args", (args, kw))
        object.__setattr__(self, "_dl_dicts", weakref.WeakKeyDictionary())
        return self

    def _dl_namespace(self) -> dict[str, Any]:
        owner: Any = _scheduler.current()
        if owner is None:
            owner = _thread_key()
        dicts = object.__getattribute__(self, "_dl_dicts")
        ns = dicts.get(owner)
        if ns is None:
            ns = dicts[owner] = {}
            args, kw = object.__getattribute__(self, "_dl_args")
            init = type(self).__init__
            if init is not object.__init__:
                init(self, *args, **kw)
        return ns

    def __getattribute__(self, name: str) -> Any:
        if name in ("__class__", "__dict__", "_dl_namespace") or name.startswith("_dl_"):
            if name == "__dict__":
                return local._dl_namespace(self)
            return object.__getattribute__(self, name)
        ns = local._dl_namespace(self)
        if name in ns:
            return ns[name]
        return object.__getattribute__(self, name)  # methods and class attributes

    def __setattr__(self, name: str, value: Any) -> None:
        local._dl_namespace(self)[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del local._dl_namespace(self)[name]
        except KeyError:
            raise AttributeError(name) from None


class _ThreadKey:
    """A weak-referenceable stand-in for an OS thread in `local`'s table."""

    __slots__ = ("__weakref__",)


_thread_keys = _threading.local()  # the real one: captured before any patching


def _thread_key() -> _ThreadKey:
    key = getattr(_thread_keys, "key", None)
    if key is None:
        key = _thread_keys.key = _ThreadKey()
    return key


def _snapshot(module: types.ModuleType) -> types.ModuleType:
    copy = types.ModuleType(module.__name__)
    copy.__dict__.update(module.__dict__)
    return copy


def _protect(set_: Callable[[types.ModuleType, str, Any], None]) -> None:
    """Keep dhaga's internals and ``concurrent.futures`` on the real modules."""
    import concurrent.futures._base
    import concurrent.futures.thread

    real = {"threading": _snapshot(_threading), "queue": _snapshot(_queue)}
    modules = [concurrent.futures._base, concurrent.futures.thread]
    modules += [m for name, m in list(sys.modules.items())
                if m is not None and (name == "dhaga" or name.startswith("dhaga."))]
    for module in modules:
        for name, snapshot in real.items():
            if getattr(module, name, None) in (_threading, _queue):
                set_(module, name, snapshot)


def patch_threading(set_: Callable[[types.ModuleType, str, Any], None]) -> None:
    """Swap `threading`'s primitives, ``Thread`` and ``local`` for dhaga-backed ones."""
    _protect(set_)
    for name in ("Lock", "RLock", "Event", "Condition", "Semaphore", "BoundedSemaphore"):
        set_(_threading, name, getattr(_sync, name))
    set_(_threading, "Thread", Thread)
    set_(_threading, "local", local)


def patch_queue(set_: Callable[[types.ModuleType, str, Any], None]) -> None:
    """Swap `queue`'s queues for `dhaga.sync`'s."""
    _protect(set_)
    for name in ("Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"):
        set_(_queue, name, getattr(_sync, name))
