"""Fixtures for the Celery worker tests: a redis-server in a temp dir, workers as subprocesses."""

from __future__ import annotations

import gc
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import need_peer, need_program
from scripts.netkit import free_port

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns something true, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A private redis-server on a free loopback port: broker and result backend."""
    need_peer(_importable("celery") and _importable("redis"), "the celery[redis] packages")
    server = need_program("redis-server")
    directory = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(100).startswith(b"+PONG")
        except OSError:
            assert proc.poll() is None, "redis-server exited"
            return False

    try:
        wait_until(answers, 10, "redis-server to answer PING")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def celery_app(redis_url):
    """tests/celery_app.py, imported in this process (the client side) against ``redis_url``."""
    os.environ["DHAGA_TEST_REDIS"] = redis_url
    try:
        if "celery_app" in sys.modules:
            module = importlib.reload(sys.modules["celery_app"])
        else:
            module = importlib.import_module("celery_app")
        yield module
    finally:
        gc.collect()  # results left from the tests unsubscribe now, not at interpreter exit
        module.app.close()
        os.environ.pop("DHAGA_TEST_REDIS", None)


@pytest.fixture
def store(celery_app):
    """The Redis database, emptied before each test."""
    client = celery_app._store
    client.flushdb()
    return client


class Worker:
    """``celery -A celery_app worker`` on the dhaga pool, as a subprocess."""

    def __init__(self, app, directory: Path, name: str, *, concurrency: int = 1000,
                 how: str = "custom", extra: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.app = app
        self.name = f"{name}@127.0.0.1"
        env = dict(os.environ, DHAGA_TEST_REDIS=app.conf.broker_url,
                   PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]), **(env or {}))
        env.pop("CELERY_CUSTOM_WORKER_POOL", None)
        if how == "custom":
            env["CELERY_CUSTOM_WORKER_POOL"] = "dhaga.celery:TaskPool"
            cmd = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", "custom"]
        elif how == "alias":
            cmd = [sys.executable, "-m", "dhaga.celery", "-A", "celery_app", "worker", "-P", "dhaga"]
        else:  # a peer pool, for comparison
            cmd = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", how]
        cmd += ["-c", str(concurrency), "-n", self.name, "--without-mingle", "--without-gossip",
                "-l", "info", *extra]
        self.log_path = directory / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=str(TESTS), env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(self._answers_ping, 30, f"worker {self.name} to answer ping", 0.2)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _answers_ping(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited ({self.proc.returncode}):\n{self.output()}")
        return bool(self.app.control.ping(destination=[self.name], timeout=0.5))

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def inspect(self, timeout: float = 5.0):
        return self.app.control.inspect(destination=[self.name], timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the process to exit; kill it if it overstays."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"worker ignored signal {sig} for {timeout}s:\n"
                                     f"{self.output()[-3000:]}") from None
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_worker(celery_app, tmp_path):
    """``start_worker(name, **options) -> Worker``; every worker is stopped after the test."""
    workers: list[Worker] = []

    def start(name: str = "w", **options) -> Worker:
        worker = Worker(celery_app.app, tmp_path, name, **options)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.proc.poll() is None:
            worker.stop(signal.SIGKILL)
        else:
            worker._log.close()
