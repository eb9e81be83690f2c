"""Sync and pool benchmarks: queue ping, lock contention, a 10,000-call executor.

Runs dhaga (asyncio loop and uvloop) and, in the same run, gevent and (for the executor)
ThreadPoolExecutor(1000), each workload in its own fresh interpreter so gevent's state and
each run's memory stay apart, and prints the medians with ratios. Usage::

    python benchmarks/bench_sync.py [--repeat 5] [--json out.json] [--workloads a,b]

Workloads:
    queue     100,000 items from a producer to a consumer dhaga, unbounded queue
    queue1    the same through a queue of maxsize=1 (every item is a hand-off)
    lock      100 dhagas each acquire/release one lock 1,000 times, sleep(0) inside
    executor  10,000 calls that each wait 50 ms (as on a slow server): GreenExecutor with
              dhaga.sleep vs ThreadPoolExecutor(1000) with time.sleep; wall time and peak RSS;
              also the floor of any greenlet-based executor: 10,000 bare greenlets started,
              suspended through one shared 50 ms wait, resumed and finished
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

QUEUE_N = 100_000
LOCK_DHAGAS, LOCK_ROUNDS = 100, 1_000
EXEC_N, EXEC_LATENCY, TPE_WORKERS = 10_000, 0.05, 1000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# ---------------------------------------------------------------------------- workloads
def queue_ping(spawn, joinall, Queue, maxsize: int) -> float:  # noqa: N803
    q = Queue(maxsize)

    def producer():
        put = q.put
        for i in range(QUEUE_N):
            put(i)

    def consumer():
        get = q.get
        for _ in range(QUEUE_N):
            get()

    t = time.perf_counter()
    joinall([spawn(producer), spawn(consumer)])
    return (time.perf_counter() - t) / QUEUE_N * 1e6


def lock_contention(spawn, joinall, sleep, lock) -> float:
    def worker():
        for _ in range(LOCK_ROUNDS):
            with lock:
                sleep(0)

    t = time.perf_counter()
    joinall([spawn(worker) for _ in range(LOCK_DHAGAS)])
    return (time.perf_counter() - t) / (LOCK_DHAGAS * LOCK_ROUNDS) * 1e6


def dhaga_run(workload: str, loop: str) -> dict:
    import dhaga
    from dhaga.sync import Lock, Queue

    dhaga.use_loop(loop)
    dhaga.run(lambda: None)  # warm up: create the loop
    if workload in ("queue", "queue1"):
        maxsize = 0 if workload == "queue" else 1
        return {"value": dhaga.run(queue_ping, dhaga.spawn, dhaga.joinall, Queue, maxsize)}
    if workload == "lock":
        return {"value": dhaga.run(lock_contention, dhaga.spawn, dhaga.joinall, dhaga.sleep,
                                   Lock())}
    if workload == "executor":
        from dhaga.pool import GreenExecutor

        def call(i):
            dhaga.sleep(EXEC_LATENCY)
            return i

        base = rss_bytes()
        t = time.perf_counter()
        with GreenExecutor(max_workers=EXEC_N) as ex:
            results = list(ex.map(call, range(EXEC_N)))
        wall = time.perf_counter() - t
        assert results == list(range(EXEC_N))
        return {"value": wall, "peak": peak_rss_bytes(), "base": base}
    raise ValueError(workload)


def gevent_run(workload: str) -> dict:
    import gevent
    import gevent.pool
    import gevent.thread
    from gevent.queue import Queue

    gevent.sleep(0)
    if workload in ("queue", "queue1"):
        maxsize = None if workload == "queue" else 1
        return {"value": queue_ping(gevent.spawn, gevent.joinall, Queue, maxsize)}
    if workload == "lock":
        return {"value": lock_contention(gevent.spawn, gevent.joinall, gevent.sleep,
                                         gevent.thread.LockType())}
    if workload == "executor":  # gevent's nearest equivalent: a Pool of greenlets
        def call(i):
            gevent.sleep(EXEC_LATENCY)
            return i

        base = rss_bytes()
        t = time.perf_counter()
        results = gevent.pool.Pool(EXEC_N).map(call, range(EXEC_N))
        wall = time.perf_counter() - t
        assert results == list(range(EXEC_N))
        return {"value": wall, "peak": peak_rss_bytes(), "base": base}
    raise ValueError(workload)


def threads_run(workload: str) -> dict:
    if workload != "executor":
        raise ValueError(workload)
    from concurrent.futures import ThreadPoolExecutor

    def call(i):
        time.sleep(EXEC_LATENCY)
        return i

    base = rss_bytes()
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=TPE_WORKERS) as ex:
        results = list(ex.map(call, range(EXEC_N)))
    wall = time.perf_counter() - t
    assert results == list(range(EXEC_N))
    return {"value": wall, "peak": peak_rss_bytes(), "base": base}


def greenlets_run(workload: str) -> dict:
    """The floor of any greenlet executor: bare greenlets, no scheduler, one shared 50 ms wait."""
    if workload != "executor":
        raise ValueError(workload)
    import greenlet

    main = greenlet.getcurrent()

    def call(i):
        main.switch()  # wait: all the calls are suspended at once, as on the slow server
        return i

    base = rss_bytes()
    t = time.perf_counter()
    calls = [greenlet.greenlet(call) for _ in range(EXEC_N)]
    for i, g in enumerate(calls):
        g.switch(i)
    time.sleep(EXEC_LATENCY)  # the one wait they all share
    results = [g.switch() for g in calls]
    wall = time.perf_counter() - t
    assert results == list(range(EXEC_N))
    return {"value": wall, "peak": peak_rss_bytes(), "base": base}


PEERS = {
    "greenlets": greenlets_run,
    "dhaga": lambda w: dhaga_run(w, "asyncio"),
    "dhaga+uvloop": lambda w: dhaga_run(w, "uvloop"),
    "gevent": gevent_run,
    "threads": threads_run,
}
WORKLOADS = {
    "queue": ("queue ping, unbounded (µs per item)", ["dhaga", "dhaga+uvloop", "gevent"]),
    "queue1": ("queue ping, maxsize=1 (µs per item)", ["dhaga", "dhaga+uvloop", "gevent"]),
    "lock": ("lock, 100 contending (µs per acquire)", ["dhaga", "dhaga+uvloop", "gevent"]),
    "executor": ("executor, 10,000 × 50 ms",
                 ["dhaga", "dhaga+uvloop", "gevent", "threads", "greenlets"]),
}


def _child(peer: str, workload: str) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", peer, workload],
        stdout=subprocess.PIPE, check=True, timeout=900,
    ).stdout
    return json.loads(out.decode().strip().splitlines()[-1])


def _median(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="runs per cell (median reported)")
    ap.add_argument("--json", help="also write the medians to this file")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        peer, workload = args.child
        print(json.dumps(PEERS[peer](workload)))
        return 0

    results: dict[str, dict[str, dict]] = {}
    for workload in args.workloads.split(","):
        # Round-robin over the peers, so that a change in the machine's load hits them alike.
        runs: dict[str, list[dict]] = {peer: [] for peer in WORKLOADS[workload][1]}
        for _ in range(args.repeat):
            for peer in runs:
                runs[peer].append(_child(peer, workload))
        for peer, peer_runs in runs.items():
            med = results.setdefault(workload, {})[peer] = _median(peer_runs)
            print(f"  {workload:<9} {peer:<13} {med['value']:.4g}", file=sys.stderr)

    print(f"\nmedians of {args.repeat} runs, each in a fresh process; "
          "(Nx) = how many times better than gevent\n")
    peers = ["dhaga", "dhaga+uvloop", "gevent"]
    print("| workload | " + " | ".join(peers) + " |")
    print("|---|" + "---|" * len(peers))
    for workload in ("queue", "queue1", "lock"):
        if workload not in results:
            continue
        row = results[workload]
        g = row["gevent"]["value"]
        cells = [f"{row[p]['value']:.2f} ({g / row[p]['value']:.2f}x)" for p in peers]
        print(f"| {WORKLOADS[workload][0]} | " + " | ".join(cells) + " |")

    if "executor" in results:
        row = results["executor"]
        names = {"dhaga": "GreenExecutor (asyncio)", "dhaga+uvloop": "GreenExecutor (uvloop)",
                 "gevent": "gevent Pool(10000)", "threads": f"ThreadPoolExecutor({TPE_WORKERS})",
                 "greenlets": "floor: 10,000 bare greenlets, one shared wait"}
        tpe = row["threads"]
        print(f"\nexecutor: {EXEC_N:,} calls each waiting {EXEC_LATENCY * 1000:.0f} ms; "
              "GreenExecutor(max_workers=10000); (Nx) = ratio to ThreadPoolExecutor\n")
        print("| executor | wall (s) | wall / one call's latency | peak RSS (MB) "
              "| peak RSS above start (MB) |")
        print("|---|---|---|---|---|")
        for p in ("dhaga", "dhaga+uvloop", "gevent", "threads", "greenlets"):
            if p not in row:
                continue
            r = row[p]
            above = r["peak"] - r["base"]
            print(f"| {names[p]} | {r['value']:.3f} ({tpe['value'] / r['value']:.1f}x) "
                  f"| {r['value'] / EXEC_LATENCY:.1f} "
                  f"| {r['peak'] / 2**20:.1f} ({r['peak'] / tpe['peak']:.2f}x) "
                  f"| {above / 2**20:.1f} ({above / (tpe['peak'] - tpe['base']):.2f}x) |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
