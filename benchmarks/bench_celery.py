"""Celery worker pools: dhaga.celery.TaskPool against gevent, threads and prefork.

One worker process runs tasks of 100 ms blocking network I/O (each waits on a private
redis-server with ``BLPOP ... 0.1``, in unchanged redis-py, then increments a counter). For
each pool, in rounds, a fresh worker starts listening on an idle queue; the tasks are published
to the bench queue; the clock starts when the worker is told to consume it
(``add_consumer``) and stops when the counter reaches the number of tasks. Measured: tasks per
second, the worker's peak RSS (sampled every 0.1 s, children included for prefork) and its CPU
time per task. Then, in the same worker, ``--concurrency`` tasks that each wait 3 s are sent,
and the worker's RSS is read once all of them wait at once (not for prefork, which holds two).

Pools: ``dhaga`` (``CELERY_CUSTOM_WORKER_POOL=dhaga.celery:TaskPool ... -P custom``),
``dhaga-alias`` (the same pool through ``python -m dhaga.celery ... -P dhaga``, whose consumer
runs in a dhaga), ``gevent`` and ``threads`` with the same ``--concurrency``, and ``prefork -c 2`` (which can
only run two tasks at a time: 20 tasks/s at best, so it gets ``--prefork-tasks`` tasks, not
5,000; its rate does not depend on the count). Medians of the rounds; ratios against gevent.
Usage::

    python benchmarks/bench_celery.py [--tasks 5000] [--concurrency 1000] [--rounds 3]
        [--prefork-tasks 300] [--pools dhaga,dhaga-alias,gevent,threads,prefork] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)


def start_redis(directory: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port),
                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", directory, "--maxclients", "20000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(100).startswith(b"+PONG")
        except OSError:
            return False

    wait_until(answers, 10, "redis-server")
    return proc, f"redis://127.0.0.1:{port}/0"


def worker_command(pool: str, concurrency: int, name: str) -> tuple[list[str], dict[str, str]]:
    env = {}
    base = [sys.executable, "-m", "celery", "-A", "celery_bench_app", "worker"]
    if pool == "dhaga":
        env["CELERY_CUSTOM_WORKER_POOL"] = "dhaga.celery:TaskPool"
        args = ["-P", "custom", "-c", str(concurrency)]
    elif pool == "dhaga-alias":
        base = [sys.executable, "-m", "dhaga.celery", "-A", "celery_bench_app", "worker"]
        args = ["-P", "dhaga", "-c", str(concurrency)]
    elif pool == "prefork":
        args = ["-P", "prefork", "-c", "2"]
    else:
        args = ["-P", pool, "-c", str(concurrency)]
    return base + args + ["-n", name, "-Q", "idle", "--without-mingle", "--without-gossip",
                          "-l", "warning"], env


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run_one(app, store, url: str, pool: str, tasks: int, concurrency: int, rnd: int,
            logdir: str) -> dict:
    import celery_bench_app

    name = f"bench-{pool}-{rnd}@127.0.0.1"
    cmd, extra_env = worker_command(pool, concurrency, name)
    env = dict(os.environ, DHAGA_BENCH_REDIS=url, **extra_env,
               PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    log = open(os.path.join(logdir, f"{pool}-{rnd}.log"), "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=str(HERE), env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is None and app.control.ping(destination=[name],
                                                                    timeout=0.5),
                   60, f"{pool} worker", 0.2)
        store.delete("bench:done")
        for _ in range(tasks):
            celery_bench_app.io_task.apply_async(queue="bench")
        ps = psutil.Process(proc.pid)
        cpu0 = tree_cpu(ps)
        peak = tree_rss(ps)
        started = time.monotonic()
        app.control.add_consumer("bench", destination=[name], reply=True, timeout=10)
        deadline = started + max(120.0, tasks / 5)
        while int(store.get("bench:done") or 0) < tasks:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{pool}: {store.get('bench:done')} of {tasks} done")
            peak = max(peak, tree_rss(ps))
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        cpu = tree_cpu(ps) - cpu0
        peak = max(peak, tree_rss(ps))
        holding_rss = None
        if pool != "prefork":
            store.delete("bench:holding", "bench:held")
            for _ in range(concurrency):
                celery_bench_app.hold_task.apply_async(args=(3.0,), queue="bench")
            deadline = time.monotonic() + 120
            while int(store.get("bench:holding") or 0) < concurrency:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{pool}: only {store.get('bench:holding')} tasks waiting")
                time.sleep(0.05)
            holding_rss = tree_rss(ps)
            if int(store.get("bench:held") or 0) > 0:
                holding_rss = None  # some finished before all started: not all at once
            wait_until(lambda: int(store.get("bench:held") or 0) >= concurrency, 120, "held")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
    return {"pool": pool, "tasks": tasks, "seconds": elapsed, "per_s": tasks / elapsed,
            "rss_mb": peak / 2**20, "cpu_ms_per_task": cpu * 1000 / tasks,
            "holding_rss_mb": None if holding_rss is None else holding_rss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--prefork-tasks", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pools", default="dhaga,dhaga-alias,gevent,threads,prefork")
    parser.add_argument("--json")
    opts = parser.parse_args()
    pools = opts.pools.split(",")

    sys.path[:0] = [str(ROOT), str(HERE)]
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
        logdir = os.environ.get("DHAGA_BENCH_LOGS", tmp)
        redis_proc, url = start_redis(tmp)
        os.environ["DHAGA_BENCH_REDIS"] = url
        try:
            import celery_bench_app

            app, store = celery_bench_app.app, celery_bench_app._store
            runs: list[dict] = []
            for rnd in range(opts.rounds):
                for pool in pools:
                    n = opts.prefork_tasks if pool == "prefork" else opts.tasks
                    r = run_one(app, store, url, pool, n, opts.concurrency, rnd, logdir)
                    runs.append(r)
                    held = r["holding_rss_mb"]
                    print(f"round {rnd + 1} {pool:8s} {r['per_s']:8.0f} tasks/s "
                          f"{r['rss_mb']:7.1f} MB {r['cpu_ms_per_task']:6.2f} ms CPU/task "
                          f"{'-' if held is None else f'{held:.1f} MB'} with "
                          f"{opts.concurrency} waiting", flush=True)
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)

    def med(pool: str, key: str) -> float:
        values = [r[key] for r in runs if r["pool"] == pool and r[key] is not None]
        return statistics.median(values) if values else float("nan")

    print(f"\n{opts.tasks} tasks of 100 ms blocking I/O (prefork: {opts.prefork_tasks}), one worker,"
          f" concurrency {opts.concurrency} (prefork: 2); medians of {opts.rounds} rounds")
    print(f"| pool | tasks/s | peak RSS (MB) | CPU ms/task | RSS with {opts.concurrency} waiting"
          " (MB) | throughput vs gevent | RSS vs gevent |")
    print("|---|---|---|---|---|---|---|")
    for pool in pools:
        rate, rss, cpu = med(pool, "per_s"), med(pool, "rss_mb"), med(pool, "cpu_ms_per_task")
        vs = (f"{rate / med('gevent', 'per_s'):.2f}x", f"{rss / med('gevent', 'rss_mb'):.2f}x") \
            if "gevent" in pools else ("-", "-")
        label = {"prefork": "prefork -c 2", "dhaga": "dhaga (-P custom)",
                 "dhaga-alias": "dhaga (python -m dhaga.celery -P dhaga)"}.get(pool, pool)
        held = med(pool, "holding_rss_mb")
        held_s = "-" if held != held else f"{held:.1f}"
        print(f"| {label} | {rate:.0f} | {rss:.1f} | {cpu:.2f} | {held_s} | {vs[0]} | {vs[1]} |")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
