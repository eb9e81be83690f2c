"""Every sync/pool example runs, and prints what its docstring says it does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, timeout: float = 45) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert not proc.stderr, proc.stderr
    return proc.stdout


def test_migrate_threadpool():
    out = run_example("migrate_threadpool.py")
    assert "ThreadPoolExecutor(100): 1000 results" in out
    assert "GreenExecutor(1000): 1000 results" in out
    assert "same results: True" in out
    m = re.search(r"OS threads while running: (\d+) before, (\d+) after", out)
    assert m and int(m.group(1)) > 100 and int(m.group(2)) == 1


def test_sync_pipeline():
    out = run_example("sync_pipeline.py")
    assert "processed 60 items, total 60570 (expected 60570)" in out
    assert "queue empty: True, unfinished: 0" in out


def test_sync_threads_bridge():
    out = run_example("sync_threads_bridge.py")
    assert "dhagas consumed 12 readings, sum 506" in out
    assert "sensor thread: consumers finished: True" in out


def test_pool_crawl():
    out = run_example("pool_crawl.py")
    assert "crawled 40 pages, 710 bytes, at most 5 at once" in out
    assert "map keeps order: True" in out
    assert "pool empty: True, free slots: 5" in out


def test_every_sync_and_pool_example_is_tested():
    mine = {p.name for p in EXAMPLES.glob("*.py")
            if p.name.startswith(("sync_", "pool_")) or p.name == "migrate_threadpool.py"}
    tested = {m for m in re.findall(r'run_example\("([\w.]+)"', Path(__file__).read_text())}
    assert mine <= tested, f"examples without a test: {mine - tested}"
