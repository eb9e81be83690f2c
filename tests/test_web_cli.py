"""``python -m dhaga.web``: one process, several processes, worker restarts, clean stops."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def start_cli(*args: str) -> tuple[subprocess.Popen, int]:
    """Start the CLI on a free port; return the process and the port it printed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dhaga.web", "tests.web_apps:app", "--bind", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env,
    )
    line = proc.stdout.readline().decode()  # type: ignore[union-attr]
    m = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
    if m is None:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"no address printed: {line!r} {err.decode()[-2000:]}")
    return proc, int(m.group(1))


def request(port: int, path: str = "/", timeout: float = 5.0) -> bytes:
    """One GET on a new connection (Connection: close); returns the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 200, (r.status, body)
    return body


def pid_of(body: bytes) -> int:
    return int(re.search(rb"pid=(\d+)", body).group(1))  # type: ignore[union-attr]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc: subprocess.Popen, signal_it: bool = True) -> int:
    if signal_it and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()  # its workers notice their master is gone and stop too
        proc.wait()
        raise
    finally:
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_processes_share_the_port_survive_a_worker_kill_and_stop_cleanly():
    proc, port = start_cli("--processes", "2", "--graceful-timeout", "5")
    try:
        pids: set[int] = set()
        for _ in range(400):  # the kernel spreads connections between the two workers
            pids.add(pid_of(request(port)))
            if len(pids) >= 2:
                break
        assert len(pids) == 2 and proc.pid not in pids
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        new: set[int] = set()
        deadline = time.monotonic() + 20
        while not new and time.monotonic() < deadline:
            pid = pid_of(request(port))  # never fails: the other worker serves meanwhile
            assert pid != victim
            if pid not in pids:
                new.add(pid)
        assert new, "no replacement worker answered"
        workers = (pids - {victim}) | new
        assert all(alive(p) for p in workers)
    finally:
        code = stop(proc)
    assert code == 0
    assert not any(alive(p) for p in workers)


def test_reuse_port_workers_and_a_rolling_restart_on_sighup():
    proc, port = start_cli("--processes", "2", "--reuse-port", "--graceful-timeout", "5")
    try:
        old: set[int] = set()
        for _ in range(400):
            old.add(pid_of(request(port)))
            if len(old) == 2:
                break
        assert len(old) == 2
        proc.send_signal(signal.SIGHUP)  # replace both workers
        new: set[int] = set()
        deadline = time.monotonic() + 20
        while len(new) < 2 and time.monotonic() < deadline:
            pid = pid_of(request(port))
            if pid not in old:
                new.add(pid)
        assert len(new) == 2, "the workers were not replaced"
        deadline = time.monotonic() + 20
        while any(alive(p) for p in old) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the old workers' exit, bounded
        assert not any(alive(p) for p in old)
    finally:
        code = stop(proc)
    assert code == 0


def test_sigterm_lets_a_request_in_flight_finish():
    proc, port = start_cli("--graceful-timeout", "10")
    signalled = False
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /slow?0.5 HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"started;" not in data:
            data += s.recv(4096)
        proc.send_signal(signal.SIGTERM)  # the request is in flight now
        signalled = True
        while not data.endswith(b"0\r\n\r\n"):
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        s.close()
        assert b"done pid=%d" % proc.pid in data
        with pytest.raises(OSError):  # it stopped accepting
            for _ in range(50):
                request(port, timeout=1)
                time.sleep(0.05)
    finally:
        code = stop(proc, signal_it=not signalled)
    assert code == 0


def test_bad_application_spec_fails_fast():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "dhaga.web", "tests.web_apps:nope", "--bind", "127.0.0.1:0"],
        capture_output=True, cwd=ROOT, env=env, timeout=30,
    )
    assert proc.returncode != 0 and b"nope" in proc.stderr


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_missing_application_module_fails_before_serving(processes):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "dhaga.web", "tests.no_such_module:app", "--bind", "127.0.0.1:0",
         "--processes", processes], capture_output=True, cwd=ROOT, env=env, timeout=30,
    )
    assert proc.returncode != 0
    assert b"serving" not in proc.stdout  # nothing claimed to serve
    assert b"No module named" in proc.stderr and b"no_such_module" in proc.stderr


@pytest.mark.timeout(40)
@pytest.mark.parametrize(("patched", "signum"), [(False, signal.SIGTERM), (True, signal.SIGINT)])
def test_a_wedged_server_still_exits_on_sigterm_or_sigint(patched, signum):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dhaga.web", "tests.web_wedged_app:app", "--bind", "127.0.0.1:0",
         "--graceful-timeout", "0.5", *(["--monkey-patch"] if patched else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env,
    )
    try:
        line = proc.stdout.readline().decode()  # type: ignore[union-attr]
        port = int(re.search(r"on http://127\.0\.0\.1:(\d+) ", line).group(1))  # type: ignore[union-attr]
        assert request(port) == b"ok"
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /wedge HTTP/1.1\r\nHost: x\r\n\r\n")
        assert proc.stderr.readline() == b"wedging\n"  # type: ignore[union-attr]
        started = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(timeout=20)
        assert code == 1  # ended by the watchdog: 0.5 s grace + its margin
        assert time.monotonic() - started < 15
        assert b"wedged" in proc.stderr.read()  # type: ignore[union-attr]
        sock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_body_timeout_option_cuts_off_a_slow_body():
    # the app answers without reading the body; the server then reads the rest of it to keep
    # the connection, and --body-timeout, not the 30 s per-read --timeout, ends that wait
    proc, port = start_cli("--body-timeout", "0.3", "--timeout", "30")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123")
            data = b""
            while chunk := c.recv(4096):  # times out (the test fails) if the server waits 30 s
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and b"pid=" in data
    finally:
        assert stop(proc) == 0
