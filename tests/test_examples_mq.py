"""The reliability-pattern examples run, kill a server or workers mid-stream, and every request
is still answered."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, timeout: float = 50, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_lazy_pirate_survives_a_killed_server():
    out = run_example("mq_lazy_pirate.py")
    assert re.search(r"server 1 \(pid \d+\) is stuck on 'request-4': killed it with SIGKILL", out)
    assert "no reply to 'request-4'" in out  # the request the dead server held was retried
    assert [f"request-{i} answered" for i in range(1, 11)] == re.findall(r"request-\d+ answered",
                                                                         out)
    assert "every request answered: 10/10" in out


def test_paranoid_pirate_survives_a_killed_and_a_frozen_worker():
    out = run_example("mq_paranoid_pirate.py")
    assert re.search(r"worker-A got stuck holding 'c\d-\d+': killed it with SIGKILL", out)
    assert re.search(r"worker-B got stuck holding 'c\d-\d+': froze it with SIGSTOP", out)
    dead = re.search(r"the queue counted \d+ worker\(s\) dead: (.*)", out)
    assert dead and {"worker-A", "worker-B"} <= set(dead.group(1).split(", "))
    retried = re.search(r"(\d+) requests retried", out)
    assert retried and int(retried.group(1)) >= 2  # what the two lost workers held
    assert "every request answered: 20/20" in out


def test_majordomo_survives_a_killed_worker():
    out = run_example("mq_majordomo.py")
    assert re.search(r"worker-A got stuck holding 'c\d-\d+': killed it with SIGKILL", out)
    assert "mmi.service: echo -> 200, nope -> 404" in out
    dead = re.search(r"the broker counted dead: (.*)", out)
    assert dead and "worker-A" in dead.group(1).split(", ")
    assert "every request answered: 24/24" in out


def test_clone_config_survives_a_killed_primary():
    out = run_example("mq_clone_config.py")
    assert "servers: primary active, backup passive" in out
    assert re.search(r"primary \(pid \d+\) killed with SIGKILL", out)
    assert "backup is active; the admin follows it" in out
    for line in ("batch_size=10", "mode=fast", "batch_size=20", "maintenance=on",
                 "maintenance removed"):
        assert f"every worker sees {line}" in out
    # the change made through the backup reached every worker after the failover
    assert out.index("killed with SIGKILL") < out.index("every worker sees batch_size=20")
    assert ('every worker has the same configuration: '
            '{"/config/batch_size": "20", "/config/mode": "fast"}') in out


def test_curve_example_serves_the_trusted_client_and_refuses_a_stranger():
    out = run_example("mq_curve.py")
    assert "trusted client got: hello, alice" in out
    assert "trusted client got: hello, bob" in out
    assert "stranger refused: no reply, and the server never saw its request" in out


def test_lazy_pirate_and_majordomo_over_curve():
    out = run_example("mq_lazy_pirate.py", 50, "--curve")
    assert "over CURVE: every connection encrypted" in out
    assert "every request answered: 10/10" in out
    out = run_example("mq_majordomo.py", 50, "--curve")
    assert "over CURVE: every connection encrypted" in out
    assert "mmi.service: echo -> 200, nope -> 404" in out
    assert "every request answered: 24/24" in out
