"""Every RPC example runs and prints what its docs say; the demo's RPC part reports sane figures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run(*args: str, timeout: float = 45) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_rpc_fanout():
    out = run(str(EXAMPLES / "rpc_fanout.py"))
    m = re.search(r"^10000 calls, results checked, ([\d.]+)s, 1 connection, 1 OS thread$", out,
                  re.M)
    assert m, out
    assert "proxy: 144" in out


def test_rpc_chained_server():
    out = run(str(EXAMPLES / "rpc_chained_server.py"))
    assert "quote: {'items': 4, 'total': 890}" in out
    assert "100 concurrent quotes checked, 1 connection from the front server" in out
    assert "error passed along: ['KeyError', " in out and "caviar" in out


def test_demo_rpc_part():
    out = run("-m", "dhaga.demo.rpc", "--calls", "500", "--latency", "0.02")
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["calls"] == 500
    assert figures["total"] == sum(i * i for i in range(500))
    assert figures["connections"] == 1 and figures["peak_in_flight"] == 500
    assert figures["threads"] == 2  # the caller's and the server's: no thread per call
    assert figures["seconds"] > 0.02 and figures["calls_per_second"] > 0
