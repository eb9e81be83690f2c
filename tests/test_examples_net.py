"""The networking examples run, each in its own process, and print what they promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args],
                          capture_output=True, text=True, timeout=40)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_echo_server_selftest():
    out = run_example("echo_server.py", "--selftest")
    assert re.search(r"^100/100 clients got their echo from 127\.0\.0\.1:\d+$", out, re.M), out


def test_http_fetcher_selftest_is_concurrent():
    out = run_example("http_fetcher.py", "--selftest")
    m = re.search(r"fetched (\d+)/200 pages in ([\d.]+)s from one OS thread", out)
    assert m, out
    assert int(m.group(1)) == 200
    assert float(m.group(2)) < 10  # one after another: 20 s
