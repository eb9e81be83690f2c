"""The debugging examples run, and print what docs/debugging.md says they print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LOOPS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, timeout: float = 45) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DHAGA_MONITOR", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_monitor_blocking_catches_the_legacy_sleep():
    proc = run_example("monitor_blocking.py")
    assert re.search(r"caught: legacy_handler-\d+ held the thread for at least 0\.\d+s at "
                     r".*monitor_blocking\.py:24 in legacy_handler", proc.stdout)
    assert "blocking episodes: 1" in proc.stdout
    assert "WARNING dhaga.monitor: legacy_handler-" in proc.stderr
    assert "time.sleep(0.3)" in proc.stderr


@pytest.mark.parametrize("loop", LOOPS)
def test_deadlock_report_names_every_wait(loop):
    out = run_example("deadlock_report.py", *(["uvloop"] if loop == "uvloop" else [])).stdout
    assert "worker: did a\nworker: did b\nDeadlock: nothing can ever wake" in out
    assert "main-1 waits on join() of <Queue size=0 maxsize=0> (2 tasks not done)" in out
    assert "worker-2 waits on <Queue size=0 maxsize=0>, at" in out
    assert "deadlock_report.py:24 in worker" in out


@pytest.mark.parametrize("loop", LOOPS)
def test_loop_lag_shows_a_dhaga_that_held_its_thread_without_a_monitor(loop):
    out = run_example("loop_lag.py", *(["uvloop"] if loop == "uvloop" else [])).stdout
    assert re.search(r"^fair only: p50 \d+\.\d+ ms, p99 \d+\.\d+ ms$", out, re.M)
    assert "held at least 0.1 s: True" in out


def test_monitor_dashboard_serves_metrics_json_and_the_page():
    pytest.importorskip("prometheus_client")
    out = run_example("monitor_dashboard.py").stdout
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/$", out, re.M)
    assert re.search(r'^metrics: dhaga_parked\{thread="MainThread",thread_id="\d+"\} 28\.0$',
                     out, re.M)
    assert "dhagas.json: 29 dhagas; waits on <Dhaga, <Event, <Lock, <Queue, fd, sleep()" in out
    assert re.search(r"episode: render_report-\d+ blocked for 0\.1\d+s at .*"
                     r"monitor_dashboard\.py:64 in render_report", out)
    assert "page: True" in out
