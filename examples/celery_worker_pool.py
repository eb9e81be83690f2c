"""A Celery worker on dhaga: 200 tasks that each block 0.5 s, in one worker process.

Run it (redis-server must be installed: the example starts a private one on a free port)::

    python examples/celery_worker_pool.py

This file is both the Celery app (the worker imports it as ``celery_worker_pool``) and the
script that starts a redis-server, a worker with the exact command line a user types, sends the
tasks and stops everything. The task code is ordinary blocking code: ``time.sleep``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from celery import Celery

URL = os.environ.get("EXAMPLE_REDIS", "redis://127.0.0.1:6379/0")
app = Celery("celery_worker_pool", broker=URL, backend=URL)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task
def slow_square(x: int) -> list:
    time.sleep(0.5)  # any blocking call: a database query, an HTTP request...
    return [x * x, os.getpid()]


# ---------------------------------------------------------------------- the demonstration
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.1)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(100).startswith(b"+PONG")
    except OSError:
        return False


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port",
                                  str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
                                 stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        app.conf.update(broker_url=url, result_backend=url)
        env = dict(os.environ, EXAMPLE_REDIS=url,
                   PYTHONPATH=os.pathsep.join([root, here, os.environ.get("PYTHONPATH", "")]),
                   # The command line a user types:
                   #   CELERY_CUSTOM_WORKER_POOL=dhaga.celery:TaskPool \
                   #       celery -A celery_worker_pool worker -P custom -c 1000
                   CELERY_CUSTOM_WORKER_POOL="dhaga.celery:TaskPool")
        cmd = [sys.executable, "-m", "celery", "-A", "celery_worker_pool", "worker",
               "-P", "custom", "-c", "1000", "-n", "example@127.0.0.1", "-l", "warning",
               "--without-mingle", "--without-gossip"]
        worker = subprocess.Popen(cmd, cwd=here, env=env)
        try:
            _wait(lambda: _redis_answers(port), 10, "redis-server")
            _wait(lambda: app.control.ping(destination=["example@127.0.0.1"], timeout=0.5),
                  60, "the worker")
            started = time.monotonic()
            results = [slow_square.delay(i) for i in range(200)]
            values = [r.get(timeout=60) for r in results]
            elapsed = time.monotonic() - started
            pids = {pid for _, pid in values}
            assert [square for square, _ in values] == [i * i for i in range(200)]
            print(f"200 tasks of 0.5 s in {elapsed:.1f}s on {len(pids)} worker process "
                  f"(pid {worker.pid}: {pids == {worker.pid}})")
            worker.send_signal(signal.SIGTERM)  # warm shutdown: running tasks would finish
            print("worker exit code:", worker.wait(30))
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
            redis.terminate()
            redis.wait(10)
            app.close()


if __name__ == "__main__":
    main()
