"""Every core example runs, and prints what its docs say it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, timeout: float = 45) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_hello_dhagas():
    out = run_example("hello_dhagas.py")
    m = re.search(r"10000 tasks, sum (\d+), ([\d.]+)s, 1 OS thread", out)
    assert m and int(m.group(1)) == sum(i * i for i in range(10_000))


def test_blocking_anywhere():
    out = run_example("blocking_anywhere.py")
    for line in ("top level: 2", "in a dhaga: 4", "worker thread: 6",
                 "awaited from a coroutine: 8", "plain asyncio program: 8"):
        assert line in out
    assert out.count("BlockingError") == 2


def test_kill_and_timeouts():
    out = run_example("kill_and_timeouts.py")
    assert "worker: killed, cleaning up\nworker: finally ran\nkilled: True" in out
    assert "this is never printed" not in out
    assert "inner expired: True - outer expired: False" in out
    assert "raised Timeout" in out


def test_asyncio_mix():
    out = run_example("asyncio_mix.py")
    assert "gathered: ['VALUE-OF-A', 'VALUE-OF-B', 'VALUE-OF-C']" in out
    assert "direct: VALUE-OF-D" in out


def test_tornado_green_handler():
    out = run_example("tornado_green_handler.py")
    assert re.search(r"^50 requests answered", out, re.M)


@pytest.mark.slow
def test_demo_runs_to_completion():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "dhaga", "demo", "--quick"],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "dhaga (1 OS thread)" in proc.stdout and "ThreadPoolExecutor" in proc.stdout
    assert "every task's result checked equal" in proc.stdout
    assert re.search(r"Networking .*: (\d+)/\1 HTTP requests", proc.stdout)
    assert re.search(r"RPC .*: 500 concurrent blocking calls .* over 1 connection", proc.stdout)
    assert re.search(r"Messaging .*: PUSH/PULL [\d,]+ msg/s; 50 REQ/REP requests", proc.stdout)
    assert re.search(r"Web .*: 50 concurrent HTTP clients, .* all answered", proc.stdout)
