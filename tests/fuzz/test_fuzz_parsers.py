"""The fuzz targets in the test suite: the seed corpus replayed, then a short bounded fuzzing run.

With atheris installed (the test extra on CPython 3.11) the run is coverage-guided, in a
subprocess; without it, hypothesis feeds each target random bytes instead. The long runs are
`fuzz.py`'s (see docs/security.md).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from fuzz_targets import TARGETS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seed_corpus_replays_clean(name):
    folder = os.path.join(HERE, "corpus", name)
    seeds = sorted(os.listdir(folder))
    assert len(seeds) >= 5
    for seed in seeds:
        with open(os.path.join(folder, seed), "rb") as f:
            TARGETS[name](f.read())


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.timeout(120)
def test_short_fuzzing_run(name, tmp_path):
    """5,000 coverage-guided inputs with atheris; 500 random ones with hypothesis without it."""
    if HAVE_ATHERIS:
        env = dict(os.environ, PYTHONPATH=ROOT)
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, "fuzz.py"), name, "-runs=5000", "-seed=17",
             str(tmp_path), os.path.join(HERE, "corpus", name)],
            capture_output=True, text=True, env=env, timeout=110, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Done 5000 runs" in proc.stderr, proc.stderr[-3000:]
        return
    target = TARGETS[name]

    @settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=2048))
    def run(data):
        target(data)

    run()
