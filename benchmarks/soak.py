"""Soak: hours of mixed web + RPC + mq load on one dhaga process; prints RSS, fd and dhaga drift.

Three processes: the *server* (a dhaga.rpc Server, a dhaga.web WSGIServer and a bound
dhaga.mq PULL, in one scheduler), the *load* (in another process: dhaga clients that keep
making RPC calls through clients opened and closed in turn, HTTP requests on new and kept-alive
connections, and mq messages from PUSH sockets that reconnect now and then, and every so often
a client that vanishes mid-message), and this *driver*, which samples the server every
``--interval`` seconds: its RSS, open fds and live dhagas, and what the load got done.

After ``--warmup`` seconds the first sample is the baseline; each line shows the drift from it,
and the summary gives the drift of the second half against the first (a leak grows in both).

Usage::

    python benchmarks/soak.py [--duration 300] [--interval 10] [--warmup 30] [--loop asyncio]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------- the server
def serve(loop: str) -> None:
    import dhaga
    from dhaga import mq, rpc
    from dhaga.web import WSGIServer

    dhaga.use_loop(loop)
    received = [0]

    def app(env, start_response):
        body = env["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok %d" % len(body)]

    def stats():
        return {"rss_kib": _rss_kib(), "fds": len(os.listdir("/proc/self/fd")),
                "alive": dhaga.get_scheduler().alive, "mq_received": received[0]}

    def main():
        server = rpc.Server(idle_timeout=30)
        server.register("echo", lambda x: x)
        server.register("slow", lambda x: (dhaga.sleep(0.05), x)[1])
        server.register("stats", stats)
        rpc_address = server.listen(("127.0.0.1", 0))
        web = WSGIServer(app, ("127.0.0.1", 0))
        pull = mq.Socket(mq.PULL)
        endpoint = pull.bind("tcp://127.0.0.1:*")

        def drain():
            while True:
                pull.recv()
                received[0] += 1

        server.start()
        web.start()
        dhaga.spawn(drain)
        print(json.dumps({"rpc": list(rpc_address), "web": list(web.address), "mq": endpoint}),
              flush=True)
        dhaga.to_thread(sys.stdin.read)  # the driver closes our stdin to stop us
        server.stop(timeout=0)
        web.stop(timeout=0)
        pull.close(linger=0)

    dhaga.run(main)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------- the load
def load(loop: str, addresses: dict, stop_after: float) -> None:
    import random
    import socket

    import dhaga
    from dhaga import mq, net, rpc

    dhaga.use_loop(loop)
    rpc_address = tuple(addresses["rpc"])
    web_address = tuple(addresses["web"])
    done = {"rpc": 0, "http": 0, "mq": 0, "vanished": 0, "errors": 0}
    deadline = time.monotonic() + stop_after
    rng = random.Random(17)

    def rpc_worker():
        while time.monotonic() < deadline:
            with rpc.Client(rpc_address, timeout=30) as client:
                with dhaga.Group() as g:
                    calls = [g.spawn(client.call, "slow" if i % 10 == 0 else "echo", b"x" * i)
                             for i in range(100)]
                done["rpc"] += sum(1 for c in calls if c.result() is not None)

    def http_worker():
        while time.monotonic() < deadline:
            sock = net.create_connection(web_address, timeout=30)
            for _ in range(20):  # kept alive
                body = b"y" * rng.randrange(0, 5000)
                sock.sendall(b"POST / HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
                data = b""
                while not data.endswith(b"ok %d" % len(body)):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("web server closed a kept-alive connection")
                    data += chunk
                done["http"] += 1
            sock.close()

    def mq_worker():
        while time.monotonic() < deadline:
            push = mq.Socket(mq.PUSH)
            push.connect(addresses["mq"])
            for i in range(1000):
                push.send(b"m%d" % i)
            done["mq"] += 1000
            push.close(linger=5000)

    def vandal():  # clients that vanish mid-message, on every protocol
        while time.monotonic() < deadline:
            for address, data in ((rpc_address, b"\x94\x00\x01\xa4echo\x91\xc5\xff"),
                                  (web_address, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le")):
                sock = net.create_connection(address, timeout=30)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                sock.sendall(data)
                sock.close()
                done["vanished"] += 1
            dhaga.sleep(0.05)

    def guarded(fn):
        def run():
            while time.monotonic() < deadline:
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - counted and shown
                    done["errors"] += 1
                    print(json.dumps({"error": f"{fn.__name__}: {exc!r}"}), flush=True)
                    dhaga.sleep(0.5)
        return run

    def report():
        while time.monotonic() < deadline:
            dhaga.sleep(1)
            print(json.dumps(done), flush=True)

    def main():
        with dhaga.Group() as g:
            for fn in (rpc_worker, rpc_worker, http_worker, http_worker, mq_worker, vandal):
                g.spawn(guarded(fn))
            g.spawn(report)

    dhaga.run(main)


# ---------------------------------------------------------------------------- the driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=300, help="seconds of load")
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=30)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.loop)
    if args.load:
        return load(args.loop, json.loads(args.load), args.duration)

    env = dict(os.environ, PYTHONPATH=ROOT)
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--loop", args.loop],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    addresses = json.loads(server.stdout.readline())
    loader = subprocess.Popen([sys.executable, __file__, "--load", json.dumps(addresses),
                               "--duration", str(args.duration), "--loop", args.loop],
                              stdout=subprocess.PIPE, env=env, text=True)
    os.set_blocking(loader.stdout.fileno(), False)
    progress: dict = {}
    samples = []
    start = time.monotonic()
    print(f"soak: {args.duration:.0f}s of mixed load, loop {args.loop}, server pid {server.pid}")
    print(f"{'t (s)':>7} {'RSS MiB':>8} {'dRSS':>7} {'fds':>5} {'dfds':>5} {'dhagas':>7} "
          f"{'d':>5} {'rpc calls':>10} {'http':>8} {'mq recvd':>9} {'vanished':>8} {'errors':>6}")
    try:
        while loader.poll() is None:
            time.sleep(args.interval)
            for line in (loader.stdout.read() or "").splitlines():
                record = json.loads(line)
                if "error" in record:
                    print("  load error:", record["error"])
                else:
                    progress = record
            stats = _server_stats(addresses)
            t = time.monotonic() - start
            if t >= args.warmup:
                samples.append((t, stats))
            base = samples[0][1] if samples else stats
            print(f"{t:7.0f} {stats['rss_kib'] / 1024:8.1f} "
                  f"{(stats['rss_kib'] - base['rss_kib']) / 1024:+7.1f} {stats['fds']:5d} "
                  f"{stats['fds'] - base['fds']:+5d} {stats['alive']:7d} "
                  f"{stats['alive'] - base['alive']:+5d} {progress.get('rpc', 0):10d} "
                  f"{progress.get('http', 0):8d} {stats['mq_received']:9d} "
                  f"{progress.get('vanished', 0):8d} {progress.get('errors', 0):6d}", flush=True)
    finally:
        loader.wait()
        final = _server_stats(addresses)
        server.stdin.close()
        server.wait(30)
    if len(samples) >= 4:
        half = len(samples) // 2
        first, mid, last = samples[0][1], samples[half][1], samples[-1][1]
        print(f"\nafter load stopped: RSS {final['rss_kib'] / 1024:.1f} MiB, fds {final['fds']}, "
              f"dhagas {final['alive']}")
        for key, unit, scale in (("rss_kib", "MiB", 1024), ("fds", "", 1), ("alive", "", 1)):
            print(f"drift of {key}: first half {(mid[key] - first[key]) / scale:+.1f}{unit}, "
                  f"second half {(last[key] - mid[key]) / scale:+.1f}{unit}")


def _server_stats(addresses: dict) -> dict:
    import socket

    import msgpack

    sock = socket.create_connection(tuple(addresses["rpc"]), timeout=30)
    try:
        sock.sendall(msgpack.packb([0, 1, "stats", []]))
        unpacker = msgpack.Unpacker()
        while True:
            for msg in unpacker:
                return msg[3]
            unpacker.feed(sock.recv(65536))
    finally:
        sock.close()


if __name__ == "__main__":
    main()
