"""Instructions per dhaga.web request, counted by valgrind's callgrind (steady on a busy machine).

``python benchmarks/bench_web_instructions.py [--workloads loop,server,server-pipelined]``

Workloads:
    loop     the request loop alone: `WSGIHandler` on an in-memory socket that hands it
             ``GET / HTTP/1.1`` with one ``Host`` field per ``recv`` and drops what is sent;
             N and 3N requests, the difference divided by 2N.
    server   a real ``python -m dhaga.web`` serving hello world (``--loop asyncio``, or ``--loop uvloop``), driven by
             ``wrk -t1 -c10`` for 3 s and then, in a fresh server, for 9 s: the difference of
             the instruction counts divided by the difference of the request counts (start-up
             and shutdown cancel out). The requests a wake-up finds ready depend on timing, so
             this moves by a few per cent between runs; the loop workload does not move.
    server-pipelined   the same with wrk sending 16 pipelined requests per write.
    server-wait10      the same with bench_web's ``wait10_app`` (each request waits 10 ms on an
             idle green socket: a timed read that times out) and ``wrk -c100``.

Callgrind counts user-space instructions only: system calls count as the instructions that make
them, not the kernel's work (the CPU time per request of ``bench_web.py`` has both). Needs
valgrind and wrk.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N = 2000
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"


# ---------------------------------------------------------------------------- child side
class _MemorySocket:
    """A connected socket's stand-in: ``n`` requests, one per recv, then the end."""

    def __init__(self, n: int) -> None:
        self.left = n

    def gettimeout(self):
        return None

    def recv(self, size: int) -> bytes:
        if self.left <= 0:
            return b""
        self.left -= 1
        return REQUEST

    def sendall(self, data: bytes) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass


def _loop(n: int) -> None:
    sys.path.insert(0, str(ROOT))
    import dhaga
    from benchmarks.bench_web import hello_app
    from dhaga.web.wsgi import WSGIHandler

    handler = WSGIHandler(hello_app)
    dhaga.run(handler, _MemorySocket(20), ("127.0.0.1", 1))  # warm the caches
    dhaga.run(handler, _MemorySocket(n), ("127.0.0.1", 1))


# ---------------------------------------------------------------------------- parent side
def _collected(stderr: str) -> int:
    found = re.search(r"Collected : (\d+)", stderr)
    if not found:
        raise RuntimeError(f"no instruction count from callgrind:\n{stderr[-2000:]}")
    return int(found.group(1))


def count_loop(n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         os.path.abspath(__file__), "--child", str(n)],
        capture_output=True, text=True, check=True, timeout=900,
    )
    return _collected(out.stderr)


def count_server(seconds: int, pipelined: bool, loop: str, app: str = "hello",
                 conns: int = 10) -> tuple[int, int]:
    """Instructions of a whole server run, and the requests wrk completed in it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_GREEN="dhaga")
    with tempfile.TemporaryDirectory() as tmp:
        err_path = Path(tmp) / "valgrind.err"
        with open(err_path, "w") as err:
            proc = subprocess.Popen(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                 "-m", "dhaga.web", f"benchmarks.bench_web:{app}_app", "--bind", "127.0.0.1:0",
                 "--loop", loop],
                stdout=subprocess.PIPE, stderr=err, cwd=ROOT, env=env)
        try:
            port = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                line = proc.stdout.readline().decode(errors="replace")  # type: ignore[union-attr]
                m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    port = int(m.group(1))
                    break
                if not line:
                    time.sleep(0.1)
            if port is None:
                raise RuntimeError("the server did not start under valgrind")
            cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
            if pipelined:
                script = Path(tmp) / "pipeline.lua"
                script.write_text(
                    'init = function(args)\n  local r = {}\n  for i = 1, 16 do\n'
                    '    r[i] = wrk.format(nil, "/")\n  end\n  req = table.concat(r)\nend\n'
                    'request = function()\n  return req\nend\n')
                cmd[4:4] = ["-s", str(script)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
            done = re.search(r"(\d+) requests in", out)
            if done is None:
                raise RuntimeError(f"wrk failed:\n{out}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
        return _collected(err_path.read_text()), int(done.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="loop,server")
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"],
                    help="the server's event loop")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        _loop(args.child)
        return 0
    for workload in args.workloads.split(","):
        if workload == "loop":
            per = (count_loop(3 * N) - count_loop(N)) / (2 * N)
            print(f"loop: {per:,.0f} instructions per request")
        elif workload in ("server", "server-pipelined", "server-wait10"):
            pipelined = workload == "server-pipelined"
            app, conns = ("wait10", 100) if workload == "server-wait10" else ("hello", 10)
            i1, n1 = count_server(3, pipelined, args.loop, app, conns)
            i2, n2 = count_server(9, pipelined, args.loop, app, conns)
            per = (i2 - i1) / (n2 - n1)
            print(f"{workload} ({args.loop}): {per:,.0f} instructions per request "
                  f"({n1:,} and {n2:,} requests)")
        else:
            raise SystemExit(f"unknown workload {workload}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
