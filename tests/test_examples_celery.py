"""examples/celery_worker_pool.py runs, and prints what docs/celery.md says it prints."""

from __future__ import annotations

import re

import pytest
from conftest import need_peer, need_program
from test_examples_core import run_example


@pytest.mark.peer
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_celery_worker_pool():
    need_program("redis-server")
    try:
        import celery  # noqa: F401
    except ImportError:
        need_peer(False, "the celery package")
    out = run_example("celery_worker_pool.py", timeout=100)
    m = re.search(r"200 tasks of 0\.5 s in ([\d.]+)s on 1 worker process \(pid \d+: True\)", out)
    assert m, out
    assert float(m.group(1)) < 40  # one at a time: 100 s
    assert "worker exit code: 0" in out
