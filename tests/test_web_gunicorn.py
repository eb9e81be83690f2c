"""``gunicorn -k dhaga.web.GunicornWorker``: serving, heartbeat, max-requests, graceful stop."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import need_peer
from test_web_cli import pid_of, request

ROOT = Path(__file__).resolve().parent.parent


class Gunicorn:
    """A gunicorn master running tests.web_apps:app with the dhaga worker on a free port."""

    def __init__(self, *args: str, app: str = "tests.web_apps:app") -> None:
        need_peer(shutil.which("gunicorn") is not None or _has_gunicorn(), "gunicorn")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "dhaga.web.GunicornWorker",
             "-b", "127.0.0.1:0", "--no-control-socket", "--log-level", "info", *args, app],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env,
        )
        self.lines: list[str] = []
        self._listening = threading.Event()
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(30) or not self.port:
            self.proc.kill()
            pytest.fail("gunicorn did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        for raw in self.proc.stderr:  # type: ignore[union-attr]
            line = raw.decode(errors="replace")
            self.lines.append(line)
            m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self._listening.set()
        self._listening.set()

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # its worker notices the arbiter is gone and stops too
            self.proc.wait()
            raise
        self._reader.join(10)
        self.proc.stderr.close()  # type: ignore[union-attr]
        return code


def _has_gunicorn() -> bool:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return False
    return True


def test_the_worker_serves_and_heartbeats_through_a_long_request():
    """--timeout 2: a request parked for 3 s must not get the worker killed."""
    g = Gunicorn("--timeout", "2", "--graceful-timeout", "5")
    try:
        first = pid_of(request(g.port, "/hello"))
        body = request(g.port, "/slow?3", timeout=20)
        assert body == b"started;done pid=%d" % first
        assert pid_of(request(g.port, "/again")) == first
    finally:
        code = g.stop()
    assert code == 0
    log = g.log()
    assert "WORKER TIMEOUT" not in log and "Booting worker" in log
    assert "Worker exiting (pid: %d)" % first in log


def test_max_requests_restarts_the_worker():
    g = Gunicorn("--max-requests", "3", "--max-requests-jitter", "0")
    try:
        pids = [pid_of(request(g.port, f"/{i}")) for i in range(7)]
    finally:
        code = g.stop()
    assert code == 0
    assert pids[0] == pids[1] == pids[2], pids
    assert pids[3] == pids[4] == pids[5] != pids[0]
    assert pids[6] not in (pids[0], pids[3])
    assert "Autorestarting worker after current request" in g.log()


def test_sigterm_is_graceful_for_requests_in_flight():
    g = Gunicorn("--graceful-timeout", "10")
    try:
        s = socket.create_connection(("127.0.0.1", g.port), timeout=10)
        s.sendall(b"GET /slow?0.5 HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"started;" not in data:
            data += s.recv(4096)
        g.proc.send_signal(signal.SIGTERM)
        while not data.endswith(b"0\r\n\r\n"):
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        s.close()
        assert b"done pid=" in data
    finally:
        code = g.stop()
    assert code == 0


def test_access_log_goes_to_gunicorns_access_log(tmp_path):
    path = tmp_path / "access.log"
    g = Gunicorn("--access-logfile", str(path))
    try:
        request(g.port, "/logged-path")
    finally:
        assert g.stop() == 0
    assert '"GET /logged-path HTTP/1.1" 200' in path.read_text()


@pytest.mark.timeout(40)
def test_a_wedged_worker_still_stops_on_sigterm():
    """The worker's loop is stuck on a real lock: the arbiter kills it after the grace period."""
    import time

    g = Gunicorn("--graceful-timeout", "1", app="tests.web_wedged_app:app")
    sock = None
    try:
        assert request(g.port) == b"ok"
        sock = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        sock.sendall(b"GET /wedge HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 10
        while "wedging\n" not in g.lines and time.monotonic() < deadline:
            time.sleep(0.01)  # the worker's stderr line, read by another thread
        assert "wedging\n" in g.lines
        started = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        g.stop()  # waits (bounded) for the arbiter to exit
        assert time.monotonic() - started < 15
    finally:
        if sock is not None:
            sock.close()
        if g.proc.poll() is None:
            g.proc.kill()
            g.proc.wait()
