"""The Celery app the dhaga worker tests start workers on: unchanged blocking task code.

The broker and result backend URL comes from ``DHAGA_TEST_REDIS`` (a redis-server the test
started). Tasks record what they did in Redis, so the tests can see runs the results do not show.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import redis
import requests
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

URL = os.environ.get("DHAGA_TEST_REDIS", "redis://127.0.0.1:6379/0")

app = Celery("celery_app", broker=URL, backend=URL)
app.conf.update(
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    result_expires=None,
    # A message delivered to a worker that died without giving it back is redelivered after
    # this long (the default is an hour).
    broker_transport_options={"visibility_timeout": 10},
    result_backend_transport_options={"visibility_timeout": 10},
)

if os.environ.get("DHAGA_TEST_WORKER_POOL"):  # the setting dhaga.celery refuses
    app.conf.worker_pool = os.environ["DHAGA_TEST_WORKER_POOL"]
if os.environ.get("DHAGA_TEST_IDLE_KEEPALIVE"):
    app.conf.dhaga_idle_keepalive = os.environ["DHAGA_TEST_IDLE_KEEPALIVE"]

_store = redis.Redis.from_url(URL)
_runner_local = threading.local()


@app.task
def sleep_for(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@app.task
def fetch(url: str) -> list:
    reply = requests.get(url, timeout=30)
    return [os.getpid(), reply.status_code, reply.text]


@app.task
def probe() -> dict:
    """What the worker process looks like from inside a task."""
    import amqp.channel
    from kombu.utils import eventio, functional, objects

    return {
        "early_copies": [functional.sleep.__module__, objects.RLock.__module__,
                         amqp.channel.Queue.__module__],
        "pid": os.getpid(),
        "socket": socket.socket.__module__,
        "event": threading.Event.__module__,
        "sleep": getattr(time.sleep, "__wrapped__", time.sleep).__module__,
        "kombu_poll": type(eventio.poll()._poller).__module__,
        "threads": threading.active_count(),
        "consumer_runs_in": _where_the_consumer_runs(),
    }


def _where_the_consumer_runs() -> str:
    """"top level" or "a dhaga": which waiter of dhaga.dump() has Celery's consumer loop."""
    import dhaga

    frame = "in " + "asynloop"  # spelt so that this line, in the caller's stack, does not match
    sections = [s for s in dhaga.dump().split("\n--- ") if frame in s]
    if len(sections) != 1:
        return f"{len(sections)} consumers"
    return "top level" if sections[0].startswith("<top level>") else "a dhaga"


@app.task
def count_in_thread_local() -> int:
    """How many tasks this thread (or this dhaga pool runner) has run, this one included."""
    _runner_local.n = getattr(_runner_local, "n", 0) + 1
    return _runner_local.n


@app.task(soft_time_limit=0.5)
def soft_limited_cleans_up(key: str) -> str:
    try:
        time.sleep(30)
    except SoftTimeLimitExceeded:
        _store.set(key, "cleaned up")
        return "cleaned up"
    return "never"


@app.task(soft_time_limit=0.5)
def soft_limited(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


@app.task
def stubborn(key: str) -> str:
    """No limits of its own: catches the soft limit and keeps waiting."""
    try:
        time.sleep(30)
    except SoftTimeLimitExceeded:
        _store.set(key, "soft limit seen")
        time.sleep(30)
    return "never"


@app.task(time_limit=1)
def hard_limited(key: str) -> str:
    _store.set(key, "started")
    try:
        time.sleep(30)
    except Exception:  # noqa: BLE001 - the hard limit must get through this
        _store.set(key, "swallowed")
        time.sleep(30)
    _store.set(key, "ran to the end")
    return "never"


@app.task(bind=True)
def wait_for_key(self, key: str, seconds: float) -> str:
    """Block until ``key`` exists in Redis (polling, as legacy code does), or ``seconds``."""
    _store.incr("started:" + key)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _store.exists(key):
            return "released"
        time.sleep(0.1)
    return "gave up"


@app.task
def nap(seconds: float) -> str:
    """Count itself in, then sleep."""
    _store.incr("napping")
    time.sleep(seconds)
    return "rested"


@app.task(acks_late=True)
def durable(n: int, seconds: float) -> int:
    """acks_late: the message is acknowledged only once the task has run to the end."""
    _store.sadd("durable:started", n)
    _store.incr("durable:runs")
    time.sleep(float(_store.get("durable:seconds") or seconds))
    _store.sadd("durable:done", n)
    return n
