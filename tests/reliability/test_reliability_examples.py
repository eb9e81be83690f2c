"""examples/rpc_limits.py runs and prints what docs/security.md says the limits do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rpc_limits_example():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "rpc_limits.py")],
                          capture_output=True, text=True, timeout=45, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout
    assert "pipelined 2000 slow calls: 64 running (max_in_flight=64), echo still answers: hi" \
        in out, out
    assert "client gone: 64 handlers cancelled, 0 running, most 64" in out, out
    assert "array bomb refused (connection closed: True), echo still answers: hi" in out, out
    assert "more than max_objects (100000) values" in proc.stderr, proc.stderr
