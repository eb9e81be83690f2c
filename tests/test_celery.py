"""dhaga.celery.TaskPool: real Celery workers (subprocesses) on a real redis-server.

Each worker runs tests/celery_app.py's unchanged blocking tasks (time.sleep, requests, redis-py).
"""

from __future__ import annotations

import http.server
import signal
import threading
import time

import pytest
from celery_worker import celery_app, redis_url, start_worker, store, wait_until  # noqa: F401

from dhaga.celery import _patching

pytestmark = [pytest.mark.peer]


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET after 0.5 s, counting how many requests wait at once."""

    lock = threading.Lock()
    in_flight = 0
    peak = 0

    def do_GET(self):  # noqa: N802 - the standard library's name
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.peak = max(cls.peak, cls.in_flight)
        try:
            time.sleep(0.5)
            body = b"slow hello"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            with cls.lock:
                cls.in_flight -= 1

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_http():
    """A threaded HTTP server on a free loopback port whose every answer takes 0.5 s."""
    handler = type("Handler", (_SlowHandler,), {"in_flight": 0, "peak": 0,
                                                 "lock": threading.Lock()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# ---------------------------------------------------------------------- choosing the pool
@pytest.mark.parametrize("argv, environ, selected", [
    (["celery", "-A", "proj", "worker", "-P", "custom"],
     {"CELERY_CUSTOM_WORKER_POOL": "dhaga.celery:TaskPool"}, True),
    (["celery", "-A", "proj", "worker", "--pool=custom"],
     {"CELERY_CUSTOM_WORKER_POOL": "dhaga.celery:TaskPool"}, True),
    (["celery", "-A", "proj", "worker", "-P", "custom"],
     {"CELERY_CUSTOM_WORKER_POOL": "other.pool:Pool"}, False),
    (["celery", "-A", "proj", "worker", "-P", "custom"], {}, False),
    (["-m", "-A", "proj", "worker", "-P", "dhaga"], {}, True),
    (["celery", "worker", "--pool", "dhaga.celery:TaskPool"], {}, True),
    (["celery", "worker", "-Pdhaga"], {}, True),
    (["celery", "-A", "proj", "worker", "-P", "gevent"], {}, False),
    (["celery", "-A", "proj", "worker"], {}, False),
    (["celery", "-A", "proj", "worker", "-P"], {}, False),
    (["celery", "multi", "start", "w1", "-P", "dhaga"], {}, False),
])
def test_which_command_lines_select_the_dhaga_pool(argv, environ, selected):
    assert _patching.selects_dhaga(argv, environ) is selected


# ---------------------------------------------------------------------- throughput
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_300_blocking_tasks_run_at_once_in_one_worker_process(celery_app, start_worker,
                                                              slow_http, store):
    url, handler = slow_http
    worker = start_worker("many", concurrency=1000)
    inside = celery_app.probe.delay().get(timeout=20)
    assert inside["pid"] == worker.pid
    # Patched before Celery, kombu and the app were imported: kombu's poller is the green one.
    assert inside["socket"] == "dhaga.net" and inside["event"] == "dhaga.sync"
    assert inside["kombu_poll"] == "dhaga._monkey_select"
    assert inside["sleep"].startswith("dhaga")

    started = time.monotonic()
    results = [celery_app.sleep_for.delay(0.5) for _ in range(150)]
    results += [celery_app.fetch.delay(url) for _ in range(150)]
    values = [r.get(timeout=60) for r in results]
    elapsed = time.monotonic() - started

    assert values[:150] == [worker.pid] * 150
    assert values[150:] == [[worker.pid, 200, "slow hello"]] * 150
    # The requests waited together: one at a time would never put 100 in flight at once.
    assert handler.peak >= 100, handler.peak
    assert elapsed < 40, elapsed  # one at a time: 300 x 0.5 s = 150 s


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_python_m_dhaga_celery_accepts_P_dhaga(celery_app, start_worker, store):
    worker = start_worker("alias", how="alias", concurrency=200)
    inside = celery_app.probe.delay().get(timeout=20)
    assert inside["pid"] == worker.pid
    assert inside["kombu_poll"] == "dhaga._monkey_select" and inside["event"] == "dhaga.sync"
    results = [celery_app.sleep_for.delay(0.5) for _ in range(100)]
    assert [r.get(timeout=40) for r in results] == [worker.pid] * 100
    stats = worker.inspect().stats()[worker.name]
    assert stats["pool"]["implementation"] == "dhaga.celery._pool:TaskPool"
    assert stats["pool"]["max-concurrency"] == 200
    assert worker.stop() == 0
