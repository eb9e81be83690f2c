"""The demonstration behind ``python -m dhaga demo``: dhaga's main job on built-in defaults.

Each part runs in a child process so that its peak memory is its own. This module uses only
dhaga's public API and the standard library.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import dhaga


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _progress(label: str, done: Callable[[], int], total: int, stop: threading.Event) -> None:
    while not stop.wait(0.25):
        _bar(label, done(), total)


def _bar(label: str, n: int, total: int) -> None:
    width = 30
    filled = width * n // max(total, 1)
    sys.stderr.write(f"\r  {label:<8} [{'#' * filled}{'.' * (width - filled)}] {n:>6}/{total}")
    sys.stderr.flush()


# ------------------------------------------------------------------------------ parts
def part_dhagas(tasks: int, latency: float) -> dict[str, Any]:
    """Every task is plain blocking code: 'call a slow service', then compute a little."""
    finished = [0]

    def handle(i: int) -> int:
        dhaga.sleep(latency)  # stands for a blocking call to a slow server
        finished[0] += 1
        return i * i

    def main() -> int:
        ticker = dhaga.spawn(_ticker, lambda: finished[0], tasks)
        with dhaga.Group() as g:
            results = [g.spawn(handle, i) for i in range(tasks)]
        ticker.kill()
        _bar("dhagas", finished[0], tasks)
        return sum(d.result() for d in results)

    start = time.perf_counter()
    total = dhaga.run(main)
    return {"total": total, "seconds": time.perf_counter() - start, "threads": threading.active_count()}


def _ticker(done: Callable[[], int], total: int) -> None:
    while True:
        _bar("dhagas", done(), total)
        dhaga.sleep(0.25)


def part_threads(tasks: int, latency: float, workers: int) -> dict[str, Any]:
    finished = [0]
    lock = threading.Lock()

    def handle(i: int) -> int:
        time.sleep(latency)
        with lock:
            finished[0] += 1
        return i * i

    stop = threading.Event()
    bar = threading.Thread(target=_progress, args=("threads", lambda: finished[0], tasks, stop))
    bar.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        total = sum(pool.map(handle, range(tasks)))
        threads = threading.active_count()
    seconds = time.perf_counter() - start
    stop.set()
    bar.join()
    _bar("threads", finished[0], tasks)
    return {"total": total, "seconds": seconds, "threads": threads}


def _child(part: str, tasks: int, latency: float, workers: int) -> dict[str, Any]:
    """Run one part in a fresh interpreter and read back its figures."""
    cmd = [sys.executable, "-m", "dhaga.demo", "--part", part, "--tasks", str(tasks),
           "--latency", str(latency), "--workers", str(workers)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, timeout=120).stdout
    sys.stderr.write("\n")
    return json.loads(out.decode().strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dhaga demo", description=__doc__)
    ap.add_argument("--tasks", type=int, default=10_000, help="blocking tasks to run (10,000)")
    ap.add_argument("--latency", type=float, default=0.2, help="each task's wait, seconds (0.2)")
    ap.add_argument("--workers", type=int, default=500, help="thread pool size (500)")
    ap.add_argument("--quick", action="store_true", help="a smaller run (for tests)")
    ap.add_argument("--part", choices=list(_PARTS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.tasks, args.latency, args.workers = 500, 0.05, 50

    if args.part:  # inside a child process
        base = _peak_rss_mib()
        res = _PARTS[args.part](args)
        res["peak_mib"] = _peak_rss_mib() - base
        print(json.dumps(res))
        return 0

    print(f"dhaga demo: {args.tasks:,} tasks, each blocking {args.latency * 1000:.0f} ms "
          f"on a slow call, written as plain sequential code.\n", flush=True)
    d = _child("dhagas", args.tasks, args.latency, args.workers)
    t = _child("threads", args.tasks, args.latency, args.workers)
    if d["total"] != t["total"]:
        print("results differ between the two runs!", file=sys.stderr)
        return 1
    rows = [
        ("dhaga (1 OS thread)", d),
        (f"ThreadPoolExecutor({args.workers})", t),
    ]
    print(f"\n{'':<28}{'tasks':>8}{'seconds':>10}{'OS threads':>12}{'peak MiB':>10}")
    for name, r in rows:
        print(f"{name:<28}{args.tasks:>8,}{r['seconds']:>10.2f}{r['threads']:>12}{r['peak_mib']:>10.1f}")
    print(f"\ndhaga finished {t['seconds'] / d['seconds']:.1f}x sooner, "
          f"every task's result checked equal (sum {d['total']:,}).")
    print(f"One OS thread ran {args.tasks:,} blocking tasks at once: "
          f"the whole job took about one latency ({args.latency}s) plus overhead.")

    n = _child("network", args.tasks, args.latency, args.workers)
    print(f"\nNetworking (monkey-patched urllib, unchanged): {n['ok']:,}/{n['requests']:,} HTTP "
          f"requests to a server holding each {args.latency * 1000:.0f} ms took {n['seconds']:.2f}s "
          f"(sequentially: {n['sequential_seconds']:.0f}s); {n['peak_in_flight']} in flight at once, "
          f"{n['threads']} OS thread(s).")
    r = _child("rpc", args.tasks, args.latency, args.workers)
    print(f"RPC (msgpack-rpc, one shared client): {r['calls']:,} concurrent blocking calls in "
          f"{r['seconds']:.2f}s over {r['connections']} connection; "
          f"{r['peak_in_flight']:,} in flight at once.")
    m = _child("messaging", args.tasks, args.latency, args.workers)
    pipe, rr = m["pipeline"], m["request_reply"]
    print(f"Messaging (ZMTP over TCP): PUSH/PULL {pipe['per_second']:,.0f} msg/s; "
          f"{rr['requests']:,} REQ/REP requests through a ROUTER/DEALER proxy to "
          f"{rr['workers_used']} REP workers in {rr['seconds']:.2f}s "
          f"(one worker alone: {rr['serial_seconds']:.0f}s).")
    w = _child("web", args.tasks, args.latency, args.workers)
    print(f"Web (dhaga.web WSGI server): {w['clients']:,} concurrent HTTP clients, each request "
          f"waiting {args.latency * 1000:.0f} ms in the app, all answered in {w['seconds']:.2f}s; "
          f"{w['peak_in_flight']:,} in flight at once, {w['threads']} OS thread(s).")
    return 0


def _part_web(args: argparse.Namespace) -> dict[str, Any]:
    from .web import part_web

    return part_web(clients=max(args.tasks // 10, 50), latency=args.latency)


def _part_messaging(args: argparse.Namespace) -> dict[str, Any]:
    from .mq import part_messaging

    return part_messaging(messages=args.tasks * 10, clients=min(args.tasks // 50, 200),
                          latency=args.latency / 10)


def _part_network(args: argparse.Namespace) -> dict[str, Any]:
    from .net import part_network

    return part_network(requests=max(args.tasks // 10, 50), latency=args.latency)


def _part_rpc(args: argparse.Namespace) -> dict[str, Any]:
    from .rpc import part_rpc

    return part_rpc(calls=args.tasks, latency=args.latency / 4)


_PARTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "dhagas": lambda a: part_dhagas(a.tasks, a.latency),
    "threads": lambda a: part_threads(a.tasks, a.latency, a.workers),
    "network": _part_network,
    "rpc": _part_rpc,
    "messaging": _part_messaging,
    "web": _part_web,
}
