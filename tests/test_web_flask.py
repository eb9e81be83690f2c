"""A real application, unchanged: Flask + requests, monkey-patched, served by dhaga.web.

1,000 clients call a Flask view at once; the view calls a backend that takes LATENCY seconds.
Served by one process, all of them are answered in about one latency: the backend sees
hundreds of requests in flight together, which only happens if no request waited for another.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_web_server import GreenHTTPConnection, fetch

import dhaga

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 1000
LATENCY = 1.0

pytest.importorskip("flask")
pytest.importorskip("requests")


def start(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dhaga.web", *args, "--bind", "127.0.0.1:0", "--backlog", "2048"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
    )
    line = proc.stdout.readline().decode()  # type: ignore[union-attr]
    m = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
    if m is None:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"{args[0]} did not start: {err.decode()[-3000:]}")
    return proc, int(m.group(1))


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err.decode()


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = GreenHTTPConnection("127.0.0.1", port, timeout=60)
    try:
        status, body, _ = fetch(conn, path)
    finally:
        conn.close()
    return status, body


@pytest.mark.slow
def test_flask_with_requests_serves_a_thousand_clients_in_about_one_latency():
    backend, backend_port = start("tests.web_apps:slow_backend",
                                  env={"SLOW_BACKEND_LATENCY": str(LATENCY)})
    flask_proc = None
    try:
        flask_proc, port = start(
            "tests.web_flask_app:app", "--monkey-patch",
            env={"BACKEND_URL": f"http://127.0.0.1:{backend_port}"},
        )
        assert get(port, "/users/0")[0] == 200  # warm up: imports, first connection

        started = time.monotonic()
        with dhaga.Group() as g:
            ds = [g.spawn(get, port, f"/users/{i}") for i in range(CLIENTS)]
        took = time.monotonic() - started

        replies = [d.result() for d in ds]
        assert all(status == 200 for status, _ in replies)
        for i, (_, body) in enumerate(replies):
            data = json.loads(body)
            assert data["user"] == i and data["backend"]["path"] == f"/user/{i}"
        stats = json.loads(get(backend_port, "/stats")[1])
        print(f"{CLIENTS} clients answered in {took:.2f}s (latency {LATENCY}s); "
              f"backend peak in flight: {stats['max_in_flight']}")
        assert stats["served"] == CLIENTS + 1
        # Concurrency, shown without timing: the backend had hundreds of calls in flight at
        # once, which a server handling one request at a time could never cause.
        assert stats["max_in_flight"] >= CLIENTS // 2, stats
        # And the whole run took a few latencies, not a thousand of them.
        assert took < 5 * LATENCY + 5, f"{CLIENTS} requests took {took:.1f}s"
    finally:
        try:
            if flask_proc is not None:
                code, err = stop(flask_proc)
                assert code == 0, err[-3000:]
                assert "Traceback" not in err, err[-3000:]
        finally:
            stop(backend)
