"""The Celery app bench_celery.py runs: one task of 100 ms blocking network I/O.

The task waits 100 ms on Redis (``BLPOP`` on a list nobody fills, with a 0.1 s timeout: the
server answers after 100 ms, so the wait is a real blocking socket read in unchanged redis-py),
then counts itself done. The URL of the private redis-server comes from ``DHAGA_BENCH_REDIS``.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

URL = os.environ.get("DHAGA_BENCH_REDIS", "redis://127.0.0.1:6379/0")
WAIT = float(os.environ.get("DHAGA_BENCH_WAIT", "0.1"))

app = Celery("celery_bench_app", broker=URL)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
                task_ignore_result=True)

# One connection per waiting task: redis-py allows 100 by default.
_store = redis.Redis.from_url(URL, max_connections=20000)


@app.task
def io_task() -> None:
    _store.blpop(["bench:never-filled"], timeout=WAIT)
    _store.incr("bench:done")


@app.task
def hold_task(seconds: float) -> None:
    """Count itself in, wait ``seconds`` on Redis, count itself out (for RSS with N waiting)."""
    _store.incr("bench:holding")
    _store.blpop(["bench:never-filled"], timeout=seconds)
    _store.incr("bench:held")
