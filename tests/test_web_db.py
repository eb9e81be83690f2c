"""Flask + SQLAlchemy and Django over real PostgreSQL, served by ``python -m dhaga.web
--monkey-patch`` and by ``gunicorn -k dhaga.web.GunicornWorker``, with no workarounds."""

from __future__ import annotations

import concurrent.futures
import http.client
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import need_peer

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ["dhaga.web", "gunicorn"]


class Server:
    """The app ``spec`` served on a free port by the CLI or by gunicorn with dhaga's worker."""

    def __init__(self, kind: str, spec: str, env: dict[str, str]) -> None:
        for module in ("flask", "sqlalchemy", "psycopg2", "gunicorn"):
            need_peer(importlib.util.find_spec(module) is not None, f"the {module} package")
        env = dict(os.environ, PYTHONPATH=str(ROOT), **env)
        if kind == "gunicorn":
            cmd = [sys.executable, "-m", "gunicorn", "-k", "dhaga.web.GunicornWorker", "-b",
                   "127.0.0.1:0", "--no-control-socket", "--worker-connections", "2000", spec]
            pattern, stream = r"Listening at: http://127\.0\.0\.1:(\d+)", "stderr"
        else:
            cmd = [sys.executable, "-m", "dhaga.web", spec, "--bind", "127.0.0.1:0",
                   "--monkey-patch"]
            pattern, stream = r"on http://127\.0\.0\.1:(\d+) ", "stdout"
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=ROOT, env=env)
        self.lines: list[str] = []
        self.port = 0
        self._readers: list[threading.Thread] = []
        found = threading.Event()

        def read(pipe, match):
            for raw in pipe:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                m = re.search(pattern, line) if match else None
                if m:
                    self.port = int(m.group(1))
                    found.set()
            found.set()

        for name in ("stdout", "stderr"):
            t = threading.Thread(target=read, args=(getattr(self.proc, name), name == stream),
                                 daemon=True)
            t.start()
            self._readers.append(t)
        if not found.wait(60) or not self.port:
            self.stop()
            pytest.fail("server did not start:\n" + "".join(self.lines)[-4000:])

    def get(self, path: str, timeout: float = 30) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        assert r.status == 200, (r.status, body[-2000:], "".join(self.lines)[-3000:])
        return json.loads(body)

    def many(self, path: str, n: int) -> tuple[list[dict], float]:
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(n) as ex:
            replies = list(ex.map(lambda _: self.get(path), range(n)))
        return replies, time.monotonic() - t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(timeout=30) == 0, "".join(self.lines)[-3000:]
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self._readers:
                t.join(10)
            self.proc.stdout.close()  # type: ignore[union-attr]
            self.proc.stderr.close()  # type: ignore[union-attr]


@pytest.fixture(params=SERVERS)
def flask_server(request, postgres_server):
    server = Server(request.param, "tests.db_flask_app:app",
                    {"DATABASE_URL": postgres_server.url, "POOL_SIZE": "20"})
    yield server
    server.stop()


@pytest.mark.peer
@pytest.mark.timeout(90)
def test_flask_sqlalchemy_cold_then_warm_engine_serves_concurrently(flask_server):
    for _ in ("cold", "warm"):
        replies, elapsed = flask_server.many("/sleep?s=0.2", 60)
        assert len(replies) == 60
        assert len({r["pid"] for r in replies}) <= 20  # through the pool of 20
        assert elapsed < 6  # 3 waves of 0.2 s; one at a time it would be 12 s


@pytest.mark.peer
@pytest.mark.timeout(90)
def test_interrupted_query_is_cancelled_and_never_pooled(flask_server):
    assert flask_server.get("/interrupted") == {"outcome": "Timeout"}  # not a driver error
    deadline = time.monotonic() + 5
    state = flask_server.get("/active")
    while state["active"] and time.monotonic() < deadline:  # the server ends it at once
        state = flask_server.get("/active")
    assert state["active"] == 0 and state["checked_out"] == 0  # nothing left checked out
    replies, _ = flask_server.many("/sleep?s=0", 40)  # every pooled connection is clean
    assert len(replies) == 40


@pytest.mark.peer
@pytest.mark.timeout(90)
def test_pool_timeout_raises_sqlalchemys_timeout_error(flask_server):
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        held = ex.submit(flask_server.get, "/hold?s=3")
        deadline = time.monotonic() + 2.5
        error = None
        while error is None and time.monotonic() < deadline:  # until /hold has the connection
            error = flask_server.get("/tiny")["error"]
        assert error == "sqlalchemy.exc.TimeoutError"
        assert held.result() == {"held": True}
    assert flask_server.get("/tiny") == {"error": None}


def _django_server(kind: str, postgres_server, max_age: str) -> Server:
    need_peer(importlib.util.find_spec("django") is not None, "the django package")
    return Server(kind, "tests.db_django_app:application",
                  {"DATABASE_PARAMS": json.dumps(postgres_server.params),
                   "CONN_MAX_AGE": max_age})


@pytest.mark.peer
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", SERVERS)
def test_django_orm_with_conn_max_age_reuses_connections(kind, postgres_server):
    server = _django_server(kind, postgres_server, "60")
    try:
        pids: set[int] = set()
        for _ in range(3):
            replies, elapsed = server.many("/orm?s=0.2", 50)
            assert {r["user"] for r in replies} == {"dhaga"}  # the ORM works in dhagas
            assert len({r["pid"] for r in replies}) == 50  # one connection per request at once
            assert elapsed < 6  # concurrently; one at a time 10 s
            pids |= {r["pid"] for r in replies}
        assert len(pids) <= 60  # later rounds reused the kept connections (not 150)
        assert server.get("/backends")["others"] <= 60  # and no more stayed open
    finally:
        server.stop()


@pytest.mark.peer
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", SERVERS)
def test_django_without_conn_max_age_closes_each_requests_connection(kind, postgres_server):
    server = _django_server(kind, postgres_server, "0")
    try:
        replies, _ = server.many("/orm?s=0.1", 30)
        assert len({r["pid"] for r in replies}) == 30
        deadline = time.monotonic() + 5
        others = server.get("/backends")["others"]
        while others and time.monotonic() < deadline:  # backends exit just after the close
            others = server.get("/backends")["others"]
        assert others == 0  # every request closed its connection
    finally:
        server.stop()
