"""What the blocking detector costs: the same workloads with dhaga.monitor off and on.

Each run is a fresh interpreter; "off" and "on" alternate, so both see the same machine load.
Workloads: spawn+join and ping-pong (bench_core.py's), a TCP echo round trip over loopback
(a client dhaga and a server dhaga in one process), and web: a dhaga.web hello-world server
loaded by wrk (``-t1 -c50``, 3 s) from another process, measured as the server process's CPU
time (user + system, the watchdog thread's included) per request. "on" is ``dhaga.monitor.start()`` with the
default threshold (0.1 s): a probe callback per loop every 100 ms, nothing in the kernel.
"instrumented" adds an instrument with a ``before_run`` hook, to show what hooks cost.

    python benchmarks/bench_monitor.py [--repeat 7] [--workloads spawn,pingpong,echo,web]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ECHO_N = 20_000
MODES = ("off", "on", "instrumented")


def echo_run() -> float:
    import dhaga
    import dhaga.net

    srv = dhaga.net.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        conn, _ = srv.accept()
        while True:
            data = conn.recv(64)
            if not data:
                break
            conn.sendall(data)
        conn.close()

    def client():
        c = dhaga.net.create_connection(srv.getsockname())
        t = time.perf_counter()
        for _ in range(ECHO_N):
            c.sendall(b"ping")
            c.recv(64)
        took = time.perf_counter() - t
        c.close()
        return took / ECHO_N

    s = dhaga.spawn(serve)
    took = dhaga.run(client)
    s.join()
    srv.close()
    return took


def web_run() -> float:
    import re
    import resource

    import dhaga
    from dhaga.web import WSGIServer

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]

    srv = WSGIServer(app, ("127.0.0.1", 0))
    srv.start()
    port = srv.address[1]

    def load() -> float:
        before = resource.getrusage(resource.RUSAGE_SELF)
        out = dhaga.to_thread(subprocess.run,
                              ["wrk", "-t1", "-c50", "-d3s", f"http://127.0.0.1:{port}/"],
                              capture_output=True, text=True, timeout=60)
        after = resource.getrusage(resource.RUSAGE_SELF)
        requests = int(re.search(r"(\d+) requests in", out.stdout).group(1))
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return cpu / requests

    try:
        return dhaga.run(load)
    finally:
        srv.stop(timeout=0)


def child(mode: str, workload: str) -> float:
    import dhaga.monitor

    m = dhaga.monitor.start() if mode in ("on", "instrumented") else None
    if mode == "instrumented":
        class Count:
            n = 0

            def before_run(self, d):
                Count.n += 1

        dhaga.monitor.add_instrument(Count())
    if workload == "echo":
        result = echo_run()
    elif workload == "web":
        result = web_run()
    else:
        import bench_core
        result = bench_core.dhaga_run(workload, "asyncio")
    if m is not None:
        m.stop()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--workloads", default="spawn,pingpong,echo,web")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(child(*args.child))
        return 0
    env = dict(os.environ)
    env.pop("DHAGA_MONITOR", None)
    results: dict[tuple[str, str], list[float]] = {}
    for workload in args.workloads.split(","):
        for _ in range(args.repeat):
            for mode in MODES:
                out = subprocess.run([sys.executable, __file__, "--child", mode, workload],
                                     stdout=subprocess.PIPE, check=True, timeout=600, env=env)
                results.setdefault((workload, mode), []).append(
                    float(out.stdout.decode().split()[-1]))
    print(f"median of {args.repeat} runs each, modes alternating (µs per operation)\n")
    print("| workload | off | on | on / off | instrumented | instrumented / off |")
    print("|---|---|---|---|---|---|")
    for workload in args.workloads.split(","):
        off, on, ins = (statistics.median(results[(workload, m)]) * 1e6 for m in MODES)
        print(f"| {workload} | {off:.3f} | {on:.3f} | {on / off:.3f} | {ins:.3f} | {ins / off:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
