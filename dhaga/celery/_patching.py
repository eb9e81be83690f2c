"""When a Celery worker runs on dhaga, patch the process before Celery and the app are imported.

Celery patches for ``-P gevent``/``-P eventlet`` in ``celery/__init__.py`` by reading
``sys.argv`` before it imports anything else. A pool outside Celery gets its first chance at
the same moment through ``CELERY_CUSTOM_WORKER_POOL``: Celery's ``maybe_patch_concurrency``
imports the custom pool's module before ``celery.app``, kombu's transports and the user's app,
so `dhaga.celery` checks here whether the command line selects it and patches then.

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
    _patched = True
    return True
