"""Django's database connections for `dhaga.monkey`: reused across requests (``CONN_MAX_AGE``).

Each request runs in a new dhaga, whose (green) ``threading.local`` starts empty, so Django
alone would open a connection per request and never reuse one. At a request's end the
connections it may keep (Django's own ``close_if_unusable_or_obsolete`` decides) are parked
for the next request of the same OS thread; at a request's start one is handed back, unless
``CONN_MAX_AGE`` passed meanwhile. This module knows Django's connection handler and request
signals; it must not know how dhagas run.
"""

from __future__ import annotations

import threading
import types
from typing import Any

from .on_import import when_imported

__all__ = ["patch_django"]

_idle_lock = threading.Lock()
_idle: dict[tuple[int, str], list[Any]] = {}  # (OS thread, alias) -> kept connections


def _park_connections(**_: Any) -> None:
    """At request end: keep this dhaga's reusable connections for the next request."""
    from django.db import connections

    thread = threading.get_ident()
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.in_atomic_block:
            continue
        conn.close_if_unusable_or_obsolete()
        if conn.connection is None:
            continue  # closed: CONN_MAX_AGE=0, expired, or broken
        with _idle_lock:
            _idle.setdefault((thread, conn.alias), []).append(conn)
        delattr(connections._connections, conn.alias)


def _reuse_connections(**_: Any) -> None:
    """At request start: give this dhaga the connections an earlier request kept."""
    from django.db import connections

    thread = threading.get_ident()
    for alias in connections:
        if getattr(connections._connections, alias, None) is not None:
            continue  # this dhaga has its own already
        while True:
            with _idle_lock:
                kept = _idle.get((thread, alias))
                conn = kept.pop() if kept else None
            if conn is None:
                break
            conn.close_if_unusable_or_obsolete()  # CONN_MAX_AGE may have passed while kept
            if conn.connection is not None:
                connections[alias] = conn
                break


def patch_django() -> None:
    """Reuse Django's connections across requests (each request runs in a new dhaga)."""

    def hook(_: types.ModuleType) -> None:
        from django.core import signals
        from django.db import close_old_connections

        # Order matters: Django's own close_old_connections runs first on both signals.
        signals.request_started.connect(_reuse_connections, dispatch_uid="dhaga-reuse")
        signals.request_finished.disconnect(close_old_connections)
        signals.request_finished.connect(_park_connections, dispatch_uid="dhaga-park")

    when_imported("django.db", hook)
