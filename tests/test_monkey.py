"""dhaga.monkey with real, unchanged libraries: each scenario runs patched in a child process.

The pytest process itself is never patched (checked at the end of every test).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import need_peer, need_program
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture
from scripts.netkit import free_port

from dhaga import monkey

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")
N = 500
DELAY = 0.2


def run_child(*args: str, timeout: float = 50) -> dict:
    """Run a child Python with ``args`` in tests/scripts; return its last JSON line."""
    env = dict(os.environ, PYTHONPATH=SCRIPTS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, *args], cwd=SCRIPTS, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def parent_stays_unpatched():
    yield
    assert not any(monkey.is_patched(n) for n in ("socket", "dns", "time", "select", "ssl"))
    assert socket.socket.__module__ == "socket" and time.sleep.__module__ == "time"


@pytest.fixture(scope="module")
def http_results():
    need_peer(_importable("requests"), "the requests package")
    need_peer(_importable("cryptography") or bool(_which("openssl")), "cryptography or openssl")
    return run_child("monkey_http.py", str(N), str(DELAY), "requests,urllib,http.client,https",
                     timeout=55)["results"]


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


@pytest.mark.peer
@pytest.mark.parametrize("client", ["requests", "urllib", "http.client", "https"])
def test_blocking_http_clients_run_concurrently_in_one_thread(http_results, client):
    r = http_results[client]
    assert r["ok"] == N  # every answer checked
    assert r["peak"] >= 100  # the server saw >= 100 requests in flight at once
    assert r["threads"] == 1  # ... made from one OS thread
    assert r["elapsed"] < 10  # sequentially: 500 x 0.2 s = 100 s


@pytest.mark.peer
def test_redis_py_against_a_real_redis_server():
    need_peer(_importable("redis"), "the redis package")
    server_bin = need_program("redis-server")
    port = free_port()
    proc = subprocess.Popen([server_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # wait until it answers PING (bounded)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(100).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        r = run_child("monkey_redis.py", str(port), str(N))
    finally:
        proc.terminate()
        proc.wait(10)
    assert r["ok"] == N
    assert r["connections"] >= 100  # the pool needed that many at once: concurrent requests
    assert r["threads"] == 1
    assert r["elapsed"] < 10  # sequentially: 500 x 0.2 s = 100 s
    assert r["blocking_ok"] == 60
    assert r["blocking_elapsed"] < 8  # 6 waves of ~0.2 s; with real threading locks ~50 s


def test_select_poll_selectors_and_sleep_are_green():
    r = run_child("monkey_select.py")
    for name in ("select", "poll", "selectors", "time.sleep"):
        assert r[name] == {"peak": 50, "ok": 50}, name  # all 50 waited at once, all woke right
    assert r["select_timeout"] and r["poll_timeout"]
    assert r["epoll_removed"]
    assert r["asyncio_ok"] and r["asyncio_selector"] == "EpollSelector"  # asyncio stays real
    assert r["threads"] == 1


def test_late_patching_warns_naming_the_modules():
    r = run_child("monkey_late.py")
    assert r["categories"] == ["MonkeyPatchWarning"]
    message = r["warnings"][0]
    for name in ("requests", "urllib3", "latecomer", "time.sleep"):
        assert name in message
    assert all(r["patched"].values())  # patching still happened
    assert r["original_sleep_kept"]


def test_python_m_dhaga_monkey_runs_an_unchanged_script():
    r = run_child("-m", "dhaga.monkey", "monkey_target.py", "first", "--second")
    assert r["argv"] == ["first", "--second"] and r["name"] == "__main__"
    assert r["green_socket"] and r["green_wrap"] and r["patched"]
    assert r["threading"] and r["subprocess"] and r["drivers"]  # as patch_all() by default
    assert r["elapsed"] < 5  # 100 concurrent 0.2 s sleeps; sequentially 20 s


def test_python_m_dhaga_monkey_no_threading_keeps_threading_real():
    r = run_child("-m", "dhaga.monkey", "--no-threading", "monkey_target.py")
    assert r["patched"] and r["subprocess"] and not r["threading"]


def test_threading_patch_is_dhaga_backed_by_default():
    r = run_child("monkey_threading.py")
    assert r["dummies"] == [] and r["pool_names"]
    assert r["condition"] and r["cond_class"] == "dhaga.sync"
    assert r["ok_locals"] == 100  # threading.local kept one value per green thread
    assert r["got"] and not r["alive"]
    assert r["os_threads"] == 1 and r["thread_class"] == "dhaga._monkey.green_threading"
    assert r["resolved"] == "127.0.0.1" and r["green_to_thread"] == 42


def test_original_and_is_patched_without_patching():
    assert monkey.original("time", "sleep") is time.sleep
    assert monkey.original("ssl.SSLContext", "wrap_socket") is __import__("ssl").SSLContext.wrap_socket
    assert not monkey.is_patched("socket")
    with pytest.raises(AttributeError):
        monkey.original("time", "no_such_function")
