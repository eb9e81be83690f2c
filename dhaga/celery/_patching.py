"""When a Celery worker runs on dhaga, patch the process before Celery and the app are imported.

Celery patches for ``-P gevent``/``-P eventlet`` in ``celery/__init__.py`` by reading
``sys.argv`` before it imports anything else. A pool outside Celery gets its first chance at
the same moment through ``CELERY_CUSTOM_WORKER_POOL``: Celery's ``maybe_patch_concurrency``
imports the custom pool's module before ``celery.app``, kombu's transports and the user's app,
so `dhaga.celery` checks here whether the command line selects it and patches then.

By then Celery's option parsing has imported kombu's helpers and py-amqp, a few of which bound
an original with ``from x import y`` (``kombu.utils.functional.sleep``, used by every connection
retry; ``kombu.utils.objects.RLock``; ``amqp.channel.Queue``): `patch_worker` points those names
at the patched objects too, so a broker reconnection backs off without freezing every task.

This module reads the command line and calls `dhaga.monkey`; it must not know how the pool
runs tasks.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

__all__ = ["POOL_NAME", "POOL_PATH", "pool_option", "selects_dhaga", "patch_worker"]

#: The alias ``python -m dhaga.celery`` registers: ``-P dhaga``.
POOL_NAME = "dhaga"
#: The pool class in Celery's ``module:Class`` notation (for ``CELERY_CUSTOM_WORKER_POOL``).
POOL_PATH = "dhaga.celery:TaskPool"
_POOL_SPELLINGS = (POOL_PATH, "dhaga.celery.TaskPool", "dhaga.celery._pool:TaskPool")

_patched = False

#: Names that ``from x import y`` may have copied before patching: (module, attribute).
_REBOUND = (
    [("time", "sleep"), ("select", "select"), ("select", "poll")]
    + [("socket", n) for n in ("socket", "create_connection", "socketpair")]
    + [("threading", n) for n in ("Lock", "RLock", "Event", "Condition", "Semaphore",
                                  "BoundedSemaphore", "Thread", "local")]
    + [("queue", n) for n in ("Queue", "LifoQueue", "PriorityQueue", "SimpleQueue")]
)
#: Packages Celery imports before it imports the pool; their stale copies are fixed up.
_EARLY_PACKAGES = ("kombu", "amqp", "billiard", "celery", "vine")


def pool_option(argv: Sequence[str]) -> str | None:
    """The value of ``-P``/``--pool`` on a command line, or None (Celery's own spellings)."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in ("-P", "--pool"):
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg.startswith("--pool="):
            return arg.partition("=")[2]
        if arg.startswith("-P") and not arg.startswith("--") and len(arg) > 2:
            return arg[2:]
    return None


def selects_dhaga(argv: Sequence[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> bool:
    """True when the command line starts a Celery worker on `dhaga.celery.TaskPool`.

    That is ``-P dhaga`` (``python -m dhaga.celery``), ``-P dhaga.celery:TaskPool``, or
    ``-P custom`` with ``CELERY_CUSTOM_WORKER_POOL=dhaga.celery:TaskPool``. ``celery multi``
    (which only starts other processes) never counts.
    """
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if "multi" in argv:
        return False
    value = pool_option(argv)
    if value is None:
        return False
    if value == POOL_NAME or value in _POOL_SPELLINGS:
        return True
    return value == "custom" and environ.get("CELERY_CUSTOM_WORKER_POOL", "").strip() in _POOL_SPELLINGS


def patch_worker(warn: bool = True) -> bool:
    """Apply the patches a worker on dhaga needs, once; return True if this call applied them.

    Everything `dhaga.monkey.patch_all` patches, threading and queue included: Celery waits on
    ``threading.Event`` and ``Condition`` during shutdown and in its pidbox, and a real one would
    block every task.

    Args:
        warn: warn (`dhaga.monkey.MonkeyPatchWarning`) about libraries imported too early.
    """
    global _patched
    from .. import monkey

    if _patched or monkey.is_patched("threading"):
        _patched = True
        return False
    monkey.patch_all(threading=True, warn=warn)
    _rebind_early_copies(monkey)
    _patched = True
    return True


def _rebind_early_copies(monkey: object) -> list[str]:
    """Point copies of patched names in Celery's early modules at the patched objects.

    Returns:
        the ``module.name`` references rebound.
    """
    pairs = []
    for module_name, attr in _REBOUND:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        current = getattr(module, attr, None)
        try:
            before = monkey.original(module_name, attr)  # type: ignore[attr-defined]
        except (AttributeError, ImportError):
            continue
        if current is not None and current is not before:
            pairs.append((before, current))
    rebound = []
    for name, module in list(sys.modules.items()):
        if module is None or name.partition(".")[0] not in _EARLY_PACKAGES:
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            for before, current in pairs:
                if value is before:
                    setattr(module, attr, current)
                    rebound.append(f"{name}.{attr}")
    return rebound
