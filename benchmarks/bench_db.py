"""Database-backed web benchmark: a Flask view doing one PostgreSQL query through a pool of 50.

The view runs ``SELECT pg_sleep(0.05)`` through SQLAlchemy (psycopg2, ``pool_size=50``,
``max_overflow=0``): the database, not the server, sets the ceiling at 50 / 0.05 s = 1,000
requests per second. wrk keeps 1,000 connections open (``wrk -t2 -c1000 --latency``), each
sending its next request as soon as the last is answered, so 950 requests always wait for a
pooled connection. Servers, each one process, measured in the same run in alternating rounds:

- ``dhaga.web``: ``python -m dhaga.web --monkey-patch`` (asyncio's loop);
- ``gevent``: ``gevent.pywsgi`` after ``gevent.monkey.patch_all()`` and
  ``psycogreen.gevent.patch_psycopg()``;
- ``gthread``: ``gunicorn -k gthread --threads 50 --worker-connections 1000`` (one thread per
  pooled connection).

A throw-away PostgreSQL 15 (tests/scripts/dbservers.py) runs on a free port. The table gives
the median requests per second of the rounds, the median p99 latency, the server's CPU time
per request (user + system of its processes: steadier than throughput on a loaded machine), and
the ratios the goals name (dhaga.web / gevent and / gthread in throughput). Usage::

    python benchmarks/bench_db.py [--duration 10] [--rounds 3] [--connections 1000]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "scripts"))

APP = "benchmarks.bench_db"
POOL = 50
QUERY_SLEEP = 0.05

# ---------------------------------------------------------------------------- the app
app = None
if os.environ.get("BENCH_DB_URL"):
    import sqlalchemy as sa
    from flask import Flask

    app = Flask(__name__)
    engine = sa.create_engine(os.environ["BENCH_DB_URL"], pool_size=POOL, max_overflow=0,
                              pool_timeout=60, pool_pre_ping=False)
    statement = sa.text(f"SELECT pg_sleep({QUERY_SLEEP})")

    @app.route("/")
    def view():
        with engine.connect() as conn:
            conn.execute(statement)
        return "ok"


def _serve_gevent() -> None:  # python bench_db.py --serve-gevent PORT
    from gevent import monkey

    monkey.patch_all()
    import psycogreen.gevent

    psycogreen.gevent.patch_psycopg()
    from gevent.pywsgi import WSGIServer

    import benchmarks.bench_db as me

    server = WSGIServer(("127.0.0.1", int(sys.argv[2])), me.app, log=None)
    print("serving", flush=True)
    server.serve_forever()


# ---------------------------------------------------------------------------- running
def _free_port() -> int:
    from netkit import free_port

    return free_port()


def _commands(port: int) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "dhaga.web": [py, "-m", "dhaga.web", f"{APP}:app", "--bind", f"127.0.0.1:{port}",
                      "--monkey-patch", "--backlog", "4096", "--keepalive-timeout", "600"],
        "gevent": [py, str(Path(__file__).resolve()), "--serve-gevent", str(port)],
        "gthread": [py, "-m", "gunicorn", "-k", "gthread", "--threads", str(POOL),
                    "--worker-connections", "2000", "--backlog", "4096", "--keep-alive", "600",
                    "-b", f"127.0.0.1:{port}", "--log-level", "warning", f"{APP}:app"],
    }


def _wait_ready(port: int, proc: subprocess.Popen) -> None:
    import http.client

    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start (status {proc.poll()})")
        time.sleep(0.1)


def _wrk(port: int, duration: float, connections: int) -> tuple[float, float, str]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
         "--timeout", "30s", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=duration + 120).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    if rps is None or p99 is None:
        raise RuntimeError(f"wrk failed:\n{out}")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: \d+|Socket errors: .*", out)
    return float(rps.group(1)), float(p99.group(1)) * scale, errors.group(0) if errors else ""


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its children (gunicorn's worker)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=1000)
    args = ap.parse_args()

    import dbservers

    bindir = dbservers.find_postgres()
    if bindir is None:
        print("PostgreSQL is not installed", file=sys.stderr)
        return 1
    pg = dbservers.Postgres(bindir).start()
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_DB_URL=pg.url)
    rps: dict[str, list[float]] = {}
    p99: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    try:
        for rnd in range(args.rounds):
            for name, cmd in _commands(0).items():
                port = _free_port()
                cmd = _commands(port)[name]
                proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
                try:
                    _wait_ready(port, proc)
                    _wrk(port, 2, args.connections)  # warm-up: fills the pool
                    cpu0 = _cpu(proc.pid)
                    r, p, errors = _wrk(port, args.duration, args.connections)
                    per_request = (_cpu(proc.pid) - cpu0) / max(1.0, r * args.duration)
                finally:
                    proc.terminate()
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    proc.stderr.close()  # type: ignore[union-attr]
                rps.setdefault(name, []).append(r)
                p99.setdefault(name, []).append(p)
                cpu.setdefault(name, []).append(per_request * 1e6)
                print(f"round {rnd + 1} {name:10s} {r:8.0f} req/s  p99 {p:7.1f} ms  "
                      f"{per_request * 1e6:6.0f} µs CPU/request  {errors}",
                      file=sys.stderr, flush=True)
    finally:
        pg.stop()
    med = {n: statistics.median(v) for n, v in rps.items()}
    med99 = {n: statistics.median(v) for n, v in p99.items()}
    print(f"\n{args.connections} connections, pool {POOL}, query pg_sleep({QUERY_SLEEP}); "
          f"ceiling {POOL / QUERY_SLEEP:.0f} req/s; medians of {args.rounds} rounds\n")
    medcpu = {n: statistics.median(v) for n, v in cpu.items()}
    print("| server | req/s | p99 latency (ms) | server CPU per request (µs) |\n|---|---|---|---|")
    for n in med:
        print(f"| {n} | {med[n]:.0f} | {med99[n]:.0f} | {medcpu[n]:.0f} |")
    d = med.get("dhaga.web", 0)
    if med.get("gevent"):
        print(f"\ndhaga.web / gevent: {d / med['gevent']:.2f}x throughput (goal >= 1.5x); "
              f"p99 {med99['dhaga.web']:.0f} vs {med99['gevent']:.0f} ms (goal: no worse)")
    if med.get("gthread"):
        print(f"dhaga.web / gthread: {d / med['gthread']:.2f}x throughput (goal >= 3x)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-gevent":
        _serve_gevent()
    else:
        sys.exit(main())
