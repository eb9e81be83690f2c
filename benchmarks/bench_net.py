"""Networking benchmark: TCP echo throughput and memory per idle connection, against peers.

``python benchmarks/bench_net.py [--runs 5] [--seconds 3] [--conns 100] [--idle 10000]``

Echo: each server runs in its own process; a load generator in another process keeps
``--conns`` connections doing 64-byte request/response ping-pong for ``--seconds`` and counts
round trips. Servers: dhaga `StreamServer` (asyncio loop and uvloop), asyncio streams (asyncio
loop and uvloop), gevent `StreamServer`. Runs are interleaved; medians are reported with ratios
to uvloop streams and to gevent, all from the same run.

Idle: ``--idle`` clients connect and stay silent; the server (dhaga or gevent, one OS thread)
reports its resident memory; the growth divided by the connections is the cost of one.
This benchmark is not a test: it asserts nothing and knows nothing about dhaga's internals.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time

PAYLOAD = b"x" * 64
SERVERS = ["dhaga-asyncio", "dhaga-uvloop", "asyncio-streams", "uvloop-streams", "gevent"]


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------- servers (child side)
def serve_echo(kind: str) -> None:
    raise_fd_limit()
    if kind.startswith("dhaga"):
        import dhaga
        from dhaga import net

        dhaga.use_loop("uvloop" if kind == "dhaga-uvloop" else "asyncio")

        def echo(sock, addr):
            if os.environ.get("BENCH_NODELAY"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            recv, sendall = sock.recv, sock.sendall
            try:
                while True:
                    data = recv(65536)
                    if not data:
                        return
                    sendall(data)
            except ConnectionResetError:  # the load generator hangs up with answers unread
                pass

        server = net.StreamServer(("127.0.0.1", 0), echo)
        server.start()
        print(f"PORT {server.address[1]}", flush=True)
        server.serve_forever()
    elif kind in ("asyncio-streams", "uvloop-streams"):
        import asyncio

        async def handle(reader, writer):
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            except ConnectionResetError:
                pass
            writer.close()

        async def main():
            server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
            print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
            await server.serve_forever()

        if kind == "uvloop-streams":
            import uvloop

            uvloop.run(main())
        else:
            asyncio.run(main())
    elif kind == "gevent":
        from gevent.server import StreamServer

        def echo(sock, addr):
            try:
                while True:
                    data = sock.recv(65536)
                    if not data:
                        return
                    sock.sendall(data)
            except ConnectionResetError:
                pass

        server = StreamServer(("127.0.0.1", 0), echo, backlog=4096)
        server.start()
        print(f"PORT {server.address[1]}", flush=True)
        server.serve_forever()
    else:
        raise SystemExit(f"unknown server {kind}")


def serve_idle(kind: str) -> None:
    """Accept connections that never send; print RSS and connection count every 0.2 s."""
    raise_fd_limit()
    count = [0]
    if kind == "dhaga":
        import dhaga
        from dhaga import net

        def idle(sock, addr):
            count[0] += 1
            try:
                sock.recv(1)
            finally:
                count[0] -= 1

        server = net.StreamServer(("127.0.0.1", 0), idle)
        server.start()
        sleep = dhaga.sleep
        spawn = dhaga.spawn
    else:
        import gevent
        from gevent.server import StreamServer

        def idle(sock, addr):
            count[0] += 1
            try:
                sock.recv(1)
            finally:
                count[0] -= 1

        server = StreamServer(("127.0.0.1", 0), idle, backlog=4096)
        server.start()
        sleep = gevent.sleep
        spawn = gevent.spawn
    print(f"PORT {server.address[1]}", flush=True)

    def report():
        while True:
            print(json.dumps({"conns": count[0], "rss_kib": rss_kib()}), flush=True)
            sleep(0.2)

    spawn(report).join()


# ---------------------------------------------------------------------- clients (child side)
def load(port: int, conns: int, seconds: float) -> None:
    """Ping-pong 64 bytes on every connection for ``seconds``; print round trips per second."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ, [0])
    for s in socks:
        s.send(PAYLOAD)
    n = 0
    warm_until = time.perf_counter() + min(0.5, seconds / 4)
    counting = False
    end = warm_until + seconds
    select = sel.select
    while True:
        for key, _ in select(0.5):
            s = key.fileobj
            got = key.data
            data = s.recv(65536)
            got[0] += len(data)
            while got[0] >= 64:  # one full answer: next request
                got[0] -= 64
                s.send(PAYLOAD)
                n += 1
        now = time.perf_counter()
        if not counting and now >= warm_until:
            counting, n, start = True, 0, now
        if now >= end:
            break
    elapsed = time.perf_counter() - start
    for s in socks:
        s.close()
    print(json.dumps({"rps": n / elapsed}), flush=True)


def idle_clients(port: int, n: int) -> None:
    raise_fd_limit()
    socks = []
    for _ in range(n):
        socks.append(socket.create_connection(("127.0.0.1", port)))
    print("CONNECTED", flush=True)
    sys.stdin.readline()  # hold them until the parent is done measuring


# ---------------------------------------------------------------------- the parent
def start_server(args: list[str]) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"server {args} did not start: {line!r}")
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench_echo(kinds: list[str], runs: int, seconds: float, conns: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {k: [] for k in kinds}
    for run in range(runs):
        for kind in kinds:
            proc, port = start_server(["--serve", kind])
            try:
                out = subprocess.run([sys.executable, __file__, "--load", str(port), str(conns),
                                      str(seconds)], capture_output=True, text=True,
                                     timeout=seconds + 60)
                rps = json.loads(out.stdout.strip().splitlines()[-1])["rps"]
            finally:
                stop(proc)
            results[kind].append(rps)
            print(f"  run {run + 1}/{runs} {kind:<16} {rps:>10,.0f} req/s", file=sys.stderr)
    return results


def bench_idle(kind: str, n: int) -> dict[str, float]:
    proc, port = start_server(["--idle-server", kind])
    try:
        def reading() -> dict:
            return json.loads(proc.stdout.readline())  # type: ignore[union-attr]

        # warm up: a few connections come and go, so lazy allocations are not counted
        warm = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        while reading()["conns"] < 50:
            pass
        for s in warm:
            s.close()
        while (base := reading())["conns"] > 0:
            pass
        base = reading()
        clients = subprocess.Popen([sys.executable, __file__, "--idle-clients", str(port), str(n)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        clients.stdout.readline()  # type: ignore[union-attr]
        deadline = time.monotonic() + 120
        while (now := reading())["conns"] < n and time.monotonic() < deadline:
            pass
        now = reading()
        clients.stdin.write("done\n")  # type: ignore[union-attr]
        clients.stdin.flush()  # type: ignore[union-attr]
        clients.wait(30)
        return {"conns": now["conns"], "kib_per_conn": (now["rss_kib"] - base["rss_kib"]) / max(now["conns"], 1),
                "base_mib": base["rss_kib"] / 1024, "total_mib": now["rss_kib"] / 1024}
    finally:
        stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--idle", type=int, default=10_000)
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--idle-server", help=argparse.SUPPRESS)
    ap.add_argument("--load", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--idle-clients", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_echo(args.serve)
        return 0
    if args.idle_server:
        serve_idle(args.idle_server)
        return 0
    if args.load:
        load(int(args.load[0]), int(args.load[1]), float(args.load[2]))
        return 0
    if args.idle_clients:
        idle_clients(int(args.idle_clients[0]), int(args.idle_clients[1]))
        return 0

    kinds = args.servers.split(",")
    print(f"TCP echo: {args.conns} connections, 64-byte request/response, load from a separate "
          f"process; {args.runs} interleaved runs of {args.seconds:.0f}s, medians", flush=True)
    res = bench_echo(kinds, args.runs, args.seconds, args.conns)
    med = {k: statistics.median(v) for k, v in res.items()}
    ref_uv = med.get("uvloop-streams")
    ref_gev = med.get("gevent")
    print(f"\n{'server':<18}{'req/s':>12}{'min':>10}{'max':>10}{'vs uvloop streams':>20}{'vs gevent':>11}")
    for k in kinds:
        uv = f"{med[k] / ref_uv:.2f}x" if ref_uv else "-"
        gv = f"{med[k] / ref_gev:.2f}x" if ref_gev else "-"
        print(f"{k:<18}{med[k]:>12,.0f}{min(res[k]):>10,.0f}{max(res[k]):>10,.0f}{uv:>20}{gv:>11}")
    if args.idle:
        print(f"\nIdle connections: {args.idle:,} clients held by one server process (one OS thread)")
        rows = {k: bench_idle(k, args.idle) for k in ("dhaga", "gevent")}
        for k, r in rows.items():
            print(f"{k:<8} {r['conns']:>7,} connections  {r['kib_per_conn']:>6.2f} KiB each  "
                  f"(RSS {r['base_mib']:.1f} -> {r['total_mib']:.1f} MiB)")
        print(f"dhaga / gevent memory per connection: "
              f"{rows['dhaga']['kib_per_conn'] / rows['gevent']['kib_per_conn']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
