"""Core benchmarks: spawn+join, ping-pong round trips, memory per blocked task.

Runs dhaga (asyncio loop and uvloop) and, in the same run, gevent, asyncio, asyncio+uvloop and
OS threads, each workload in its own fresh interpreter, and prints medians with ratios against
gevent. Usage::

    python benchmarks/bench_core.py [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

SPAWN_N = 100_000
PINGPONG_N = 100_000
BLOCKED_N = 10_000
THREAD_SPAWN_N = 10_000  # 100,000 OS threads is not a fair ask of any machine


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------- workloads
def _work(x):
    return x


def dhaga_run(workload: str, loop: str) -> float:
    import dhaga
    from dhaga.sync import Event, Queue

    dhaga.use_loop(loop)
    if workload == "spawn":
        def main():
            ds = [dhaga.spawn(_work, i) for i in range(SPAWN_N)]
            dhaga.joinall(ds)

        dhaga.run(lambda: None)  # warm up: create the loop
        t = time.perf_counter()
        dhaga.run(main)
        return (time.perf_counter() - t) / SPAWN_N
    if workload == "pingpong":
        a, b = Queue(), Queue()

        def pinger():
            for i in range(PINGPONG_N):
                a.put(i)
                b.get()

        def ponger():
            for _ in range(PINGPONG_N):
                b.put(a.get())

        def main():
            dhaga.joinall([dhaga.spawn(pinger), dhaga.spawn(ponger)])

        dhaga.run(lambda: None)
        t = time.perf_counter()
        dhaga.run(main)
        return (time.perf_counter() - t) / PINGPONG_N
    if workload == "memory":
        ev = Event()
        started = [0]

        def blocked():  # user code is Python: a task runs at least one Python frame
            started[0] += 1
            ev.wait()

        dhaga.run(lambda: None)
        gc.collect()
        before = rss_bytes()
        ds = [dhaga.spawn(blocked) for _ in range(BLOCKED_N)]
        while started[0] < BLOCKED_N:
            dhaga.sleep(0.001)
        gc.collect()
        per = (rss_bytes() - before) / BLOCKED_N
        ev.set()
        dhaga.joinall(ds)
        return per
    raise ValueError(workload)


def gevent_run(workload: str) -> float:
    import gevent
    from gevent.event import Event
    from gevent.queue import Queue

    if workload == "spawn":
        gevent.sleep(0)
        t = time.perf_counter()
        ds = [gevent.spawn(_work, i) for i in range(SPAWN_N)]
        gevent.joinall(ds)
        return (time.perf_counter() - t) / SPAWN_N
    if workload == "pingpong":
        a, b = Queue(), Queue()

        def pinger():
            for i in range(PINGPONG_N):
                a.put(i)
                b.get()

        def ponger():
            for _ in range(PINGPONG_N):
                b.put(a.get())

        t = time.perf_counter()
        gevent.joinall([gevent.spawn(pinger), gevent.spawn(ponger)])
        return (time.perf_counter() - t) / PINGPONG_N
    if workload == "memory":
        ev = Event()
        started = [0]

        def blocked():
            started[0] += 1
            ev.wait()

        gevent.sleep(0)
        gc.collect()
        before = rss_bytes()
        ds = [gevent.spawn(blocked) for _ in range(BLOCKED_N)]
        while started[0] < BLOCKED_N:  # gevent starts only ~1,000 per loop iteration
            gevent.sleep(0.001)
        gc.collect()
        per = (rss_bytes() - before) / BLOCKED_N
        ev.set()
        gevent.joinall(ds)
        return per
    raise ValueError(workload)


def asyncio_run(workload: str, loop: str) -> float:
    import asyncio

    if loop == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run

    async def work(x):
        return x

    async def spawn():
        t = time.perf_counter()
        ts = [asyncio.create_task(work(i)) for i in range(SPAWN_N)]
        await asyncio.gather(*ts)
        return (time.perf_counter() - t) / SPAWN_N

    async def pingpong():
        a, b = asyncio.Queue(), asyncio.Queue()

        async def pinger():
            for i in range(PINGPONG_N):
                a.put_nowait(i)
                await b.get()

        async def ponger():
            for _ in range(PINGPONG_N):
                b.put_nowait(await a.get())

        t = time.perf_counter()
        await asyncio.gather(pinger(), ponger())
        return (time.perf_counter() - t) / PINGPONG_N

    async def memory():
        ev = asyncio.Event()
        started = [0]

        async def blocked():
            started[0] += 1
            await ev.wait()

        gc.collect()
        before = rss_bytes()
        ts = [asyncio.create_task(blocked()) for _ in range(BLOCKED_N)]
        while started[0] < BLOCKED_N:
            await asyncio.sleep(0.001)
        gc.collect()
        per = (rss_bytes() - before) / BLOCKED_N
        ev.set()
        await asyncio.gather(*ts)
        return per

    return runner({"spawn": spawn, "pingpong": pingpong, "memory": memory}[workload]())


def threads_run(workload: str) -> float:
    import queue
    import threading

    if workload == "spawn":
        t = time.perf_counter()
        ts = [threading.Thread(target=_work, args=(i,)) for i in range(THREAD_SPAWN_N)]
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        return (time.perf_counter() - t) / THREAD_SPAWN_N
    if workload == "pingpong":
        a, b = queue.Queue(), queue.Queue()
        n = PINGPONG_N // 10

        def ponger():
            for _ in range(n):
                b.put(a.get())

        th = threading.Thread(target=ponger)
        t = time.perf_counter()
        th.start()
        for i in range(n):
            a.put(i)
            b.get()
        th.join()
        return (time.perf_counter() - t) / n
    if workload == "memory":
        ev = threading.Event()
        gc.collect()
        before = rss_bytes()
        ts = [threading.Thread(target=lambda: ev.wait()) for _ in range(BLOCKED_N)]
        for th in ts:
            th.start()
        gc.collect()
        per = (rss_bytes() - before) / BLOCKED_N
        ev.set()
        for th in ts:
            th.join()
        return per
    raise ValueError(workload)


PEERS = {
    "dhaga": lambda w: dhaga_run(w, "asyncio"),
    "dhaga+uvloop": lambda w: dhaga_run(w, "uvloop"),
    "gevent": gevent_run,
    "asyncio": lambda w: asyncio_run(w, "asyncio"),
    "asyncio+uvloop": lambda w: asyncio_run(w, "uvloop"),
    "threads": threads_run,
}
WORKLOADS = {
    "spawn": "spawn+join (µs per task)",
    "pingpong": "ping-pong (µs per round trip)",
    "memory": "memory per blocked task (bytes)",
}


def _child(peer: str, workload: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", peer, workload],
        stdout=subprocess.PIPE, check=True, timeout=600,
    ).stdout
    return float(out.decode().strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="also write the medians to this file")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        peer, workload = args.child
        print(PEERS[peer](workload))
        return 0

    peers = args.peers.split(",")
    results: dict[str, dict[str, float]] = {}
    for workload in WORKLOADS:
        for peer in peers:
            runs = [_child(peer, workload) for _ in range(args.repeat)]
            results.setdefault(workload, {})[peer] = statistics.median(runs)
            print(f"  {workload:<9} {peer:<15} {statistics.median(runs):.3g}", file=sys.stderr)

    print(f"\nmedians of {args.repeat} runs, each in a fresh process; "
          f"ratio = how many times better than gevent\n")
    print("| workload | " + " | ".join(peers) + " |")
    print("|---|" + "---|" * len(peers))
    for workload, title in WORKLOADS.items():
        row = results[workload]
        g = row.get("gevent")
        cells = []
        for p in peers:
            v = row[p]
            shown = f"{v * 1e6:.2f}" if workload != "memory" else f"{v:,.0f}"
            ratio = f" ({g / v:.2f}x)" if g else ""
            cells.append(shown + ratio)
        print(f"| {title} | " + " | ".join(cells) + " |")
    if "asyncio+uvloop" in results["spawn"] and "dhaga" in results["spawn"]:
        s = results["spawn"]
        print(f"\nspawn+join vs asyncio+uvloop tasks: dhaga {s['asyncio+uvloop'] / s['dhaga']:.2f}x, "
              f"dhaga+uvloop {s['asyncio+uvloop'] / s.get('dhaga+uvloop', s['dhaga']):.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
