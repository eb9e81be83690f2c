"""Clone pattern benchmark: updates per second through one server with 10 clients subscribed.

Three processes per run, on 127.0.0.1 TCP:

- a lone ``CloneServer`` (``python -m dhaga.mq.clone server``);
- the 10 subscribing ``CloneClient`` objects, as dhagas of one process (each with its own
  sockets: one SUB per server, a snapshot DEALER, a PUB), replicating the whole map;
- one writing ``CloneClient``: ``--updates`` updates of 64-byte values to ``--keys`` keys, in
  windows of 500 (it waits until the server has published its window back, so nothing is
  dropped at a high-water mark; it is an 11th subscriber).

The rate is updates / (last update seen by the last subscriber - first update sent); the
clocks are the machine's monotonic clock, shared by the processes. The peer in the same run:
the same 5-frame messages sent straight from a ``dhaga.mq`` PUB to 10 SUBs (no server, no
sequence checks, no map): the fan-out ceiling. Medians of ``--repeat`` runs are printed.
Usage::

    python benchmarks/bench_clone.py [--repeat 3] [--updates 20000] [--keys 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIBERS = 10
WINDOW = 500
VALUE = b"v" * 64


def subscribers(base: str, n: int) -> None:
    """Child: 10 clients; print when each saw the last update."""
    import dhaga
    from dhaga.mq.clone import CloneClient

    clients = [CloneClient(base, timeout=5.0) for _ in range(SUBSCRIBERS)]
    watches = [c.watch("/bench/last") for c in clients]
    for c in clients:
        c.wait_synced(timeout=10)
    print("ready", flush=True)
    done = [w.get(timeout=120) and time.monotonic() for w in watches]
    resyncs = sum(c.syncs - 1 for c in clients)
    print(f"done {max(done)} {resyncs} {sum(len(c) for c in clients)}", flush=True)
    for c in clients:
        c.close()
    dhaga.sleep(0.01)


def writer(base: str, n: int, keys: int) -> None:
    """Child: write n updates in windows; print when the first was sent."""
    from dhaga.mq.clone import CloneClient

    client = CloneClient(base, timeout=5.0)
    client.wait_synced(timeout=10)
    start = time.monotonic()
    for i in range(n - 1):
        client.set(f"/bench/{i % keys}", VALUE)
        if i % WINDOW == WINDOW - 1:
            client.flush(timeout=60)
    client.set("/bench/last", VALUE)
    client.flush(timeout=60)
    print(f"start {start}", flush=True)
    client.close()


def raw_subscribers(endpoint: str, n: int) -> None:
    """Child: 10 plain SUBs; print when each got the n-th message."""
    import dhaga
    from dhaga import mq

    socks = [mq.Socket(mq.SUB, linger=0, rcvhwm=0) for _ in range(SUBSCRIBERS)]
    for s in socks:
        s.subscribe(b"")
        s.connect(endpoint)
    for s in socks:
        s.recv_multipart(timeout=10)  # a greeting: subscribed
    print("ready", flush=True)

    def drain(s) -> float:
        got = 0
        while got < n:
            if s.recv_multipart()[0] != b"HELLO":
                got += 1
        return time.monotonic()

    ends = [d.result() for d in [dhaga.spawn(drain, s) for s in socks]]
    print(f"done {max(ends)} 0 0", flush=True)
    for s in socks:
        s.close()


def raw_publisher(n: int, keys: int) -> None:
    """Child: an XPUB greeting subscribers, then n KVPUB-shaped messages as fast as it can."""
    import dhaga
    from dhaga import mq
    from dhaga.mq.clone import KVMsg

    pub = mq.Socket(mq.XPUB, sndhwm=0, linger=-1, xpub_verbose=True)
    print(f"ready {pub.bind('tcp://127.0.0.1:*')}", flush=True)
    subscribed = 0
    while subscribed < SUBSCRIBERS:
        if pub.recv()[:1] == b"\x01":
            subscribed += 1
            pub.send_multipart([b"HELLO"])
    dhaga.to_thread(sys.stdin.readline)  # "go"
    start = time.monotonic()
    for i in range(n):
        pub.send_multipart(
            KVMsg(f"/bench/{i % keys}", i + 1, os.urandom(16), {}, VALUE).encode()
        )
    print(f"start {start}", flush=True)
    pub.close()


def _spawn(*args: str, stdin: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        text=True,
        stdin=subprocess.PIPE if stdin else None,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=ROOT,
    )


def _line(proc: subprocess.Popen, prefix: str) -> str:
    while True:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"{proc.args} ended without {prefix!r}")
        if line.startswith(prefix):
            return line.split(maxsplit=1)[1].strip() if " " in line.strip() else ""


def run_clone(n: int, keys: int) -> tuple[float, int]:
    me = os.path.abspath(__file__)
    server = _spawn("-m", "dhaga.mq.clone", "server")
    procs = [server]
    try:
        base = _line(server, "ready").split()[0].split("=", 1)[1]
        subs = _spawn(me, "--child", "subscribers", base, str(n))
        procs.append(subs)
        _line(subs, "ready")
        w = _spawn(me, "--child", "writer", base, str(n), str(keys))
        procs.append(w)
        start = float(_line(w, "start"))
        end, resyncs, _ = _line(subs, "done").split()
        return n / (float(end) - start), int(resyncs)
    finally:
        _stop(procs)


def _stop(procs: list) -> None:
    for p in procs:
        p.kill()
        p.wait()
        p.stdout.close()
        if p.stdin:
            p.stdin.close()


def run_raw(n: int, keys: int) -> float:
    me = os.path.abspath(__file__)
    pub = _spawn(me, "--child", "raw_publisher", str(n), str(keys), stdin=True)
    procs = [pub]
    try:
        endpoint = _line(pub, "ready")
        subs = _spawn(me, "--child", "raw_subscribers", endpoint, str(n))
        procs.append(subs)
        _line(subs, "ready")
        pub.stdin.write("go\n")  # type: ignore[union-attr]
        pub.stdin.flush()  # type: ignore[union-attr]
        start = float(_line(pub, "start"))
        end = float(_line(subs, "done").split()[0])
        return n / (end - start)
    finally:
        _stop(procs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--updates", type=int, default=20_000)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import dhaga

        fn, *rest = args.child
        conv = {
            "subscribers": (str, int),
            "writer": (str, int, int),
            "raw_subscribers": (str, int),
            "raw_publisher": (int, int),
        }[fn]
        dhaga.run(globals()[fn], *(c(v) for c, v in zip(conv, rest)))
        return
    clone, raw, resyncs = [], [], []
    for i in range(args.repeat):
        rate, resynced = run_clone(args.updates, args.keys)
        clone.append(rate)
        resyncs.append(resynced)
        raw.append(run_raw(args.updates, args.keys))
        print(
            f"run {i + 1}: clone {clone[-1]:,.0f} updates/s ({resynced} resyncs), "
            f"raw PUB fan-out {raw[-1]:,.0f} msg/s",
            flush=True,
        )
    c, r = statistics.median(clone), statistics.median(raw)
    print(
        f"\n{args.updates:,} updates of 64 B to {args.keys:,} keys, {SUBSCRIBERS} subscribers "
        f"(dhagas of one process), medians of {args.repeat} runs; load {os.getloadavg()[0]:.1f}"
    )
    print("| path | rate | ratio |")
    print("|---|---|---|")
    print(
        f"| Clone: writer -> CloneServer -> 10 CloneClients | {c:,.0f} updates/s | "
        f"{c / r:.2f}x |"
    )
    print(f"| raw dhaga.mq PUB -> 10 SUB (same frames) | {r:,.0f} msg/s | 1.00x |")


if __name__ == "__main__":
    main()
