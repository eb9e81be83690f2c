"""Celery workers on dhaga: `TaskPool` runs each task in a dhaga, thousands per worker process.

Start a worker with either command line (both documented in docs/celery.md)::

    CELERY_CUSTOM_WORKER_POOL=dhaga.celery:TaskPool celery -A proj worker -P custom -c 1000
    python -m dhaga.celery -A proj worker -P dhaga -c 1000

Importing this package in a process whose command line selects the pool applies
`dhaga.monkey.patch_all` (threading included) at once: with ``-P custom`` Celery imports it
before ``celery.app``, kombu's transports and the user's app, which is what makes the patching
early enough. Imported anywhere else, it patches nothing. Apart from that one call this face
holds no logic.
"""

from __future__ import annotations

from ._patching import POOL_NAME, POOL_PATH, patch_worker, selects_dhaga

if selects_dhaga():
    # The earliest moment a pool outside Celery gets (see _patching); nothing to warn about:
    # only Celery's option parsing and kombu's helpers are imported so far, holding no socket.
    patch_worker(warn=False)

from ._pool import TaskPool  # noqa: E402 - imports Celery, after the patching above

__all__ = ["TaskPool", "POOL_NAME", "POOL_PATH", "patch_worker"]
