"""RPC benchmarks: echo calls per second through dhaga.rpc, a thread pool, and grpcio's asyncio.

Every server runs in its own process; every client workload runs in a fresh interpreter, and the
figures are medians of ``--repeat`` runs made in this one invocation:

- dhaga.rpc: one shared `Client`, with 1 caller and with 100 concurrent callers (dhagas);
- threads: ``ThreadPoolExecutor(100)``, each thread with its own blocking msgpack-rpc client
  (plain stdlib sockets and dhaga's msgpack-rpc codec), against the same dhaga server;
- grpcio asyncio (the ``bench`` extra): unary calls, 1 caller and 100 concurrent tasks, on a
  ``grpc.aio`` server whose echo method is declared with generic handlers (no protoc).

Usage::

    python benchmarks/bench_rpc.py [--repeat 5] [--calls 20000] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

PAYLOAD = b"x" * 32
CALLERS = 100
GRPC_METHOD = "/bench.Echo/Echo"


# ---------------------------------------------------------------------------- servers
def serve_dhaga(loop: str) -> None:
    import dhaga
    from dhaga import rpc

    dhaga.use_loop(loop)
    server = rpc.Server()
    server.register("echo", lambda data: data)
    address = server.listen(("127.0.0.1", 0))
    print(json.dumps(list(address)), flush=True)

    def main() -> None:
        server.start()
        dhaga.to_thread(sys.stdin.read)  # the driver closes our stdin to stop us
        server.stop(timeout=0)

    dhaga.run(main)


def serve_grpc() -> None:
    import asyncio

    import grpc

    async def echo(request: bytes, context: object) -> bytes:
        return request

    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler("bench.Echo", {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=None, response_serializer=None),
        })
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(json.dumps(["127.0.0.1", port]), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(0)

    asyncio.run(main())


# ---------------------------------------------------------------------------- clients
def bench_dhaga(address: tuple[str, int], calls: int, callers: int, loop: str) -> float:
    import dhaga
    from dhaga import rpc

    dhaga.use_loop(loop)
    client = rpc.Client(address)

    def caller(n: int) -> None:
        call = client.call
        for _ in range(n):
            if call("echo", PAYLOAD) != PAYLOAD:
                raise AssertionError("wrong echo")

    def main() -> float:
        caller(200)  # warm up: connect, fill caches
        start = time.perf_counter()
        with dhaga.Group() as g:
            for _ in range(callers):
                g.spawn(caller, calls // callers)
        return time.perf_counter() - start

    elapsed = dhaga.run(main)
    client.close()
    return calls / elapsed


class BlockingClient:
    """A plain blocking msgpack-rpc client: one stdlib socket, one call at a time."""

    def __init__(self, address: tuple[str, int]) -> None:
        from dhaga.codecs.msgpack_rpc import Decoder

        self.sock = socket.create_connection(address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = Decoder()
        self.msgid = 0

    def call(self, method: str, *args: object) -> object:
        from dhaga.codecs.msgpack_rpc import encode_request

        self.msgid += 1
        self.sock.sendall(encode_request(self.msgid, method, args))
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            for msg in self.decoder.feed(data):
                if msg.msgid == self.msgid:
                    if msg.error is not None:
                        raise RuntimeError(msg.error)
                    return msg.result

    def close(self) -> None:
        self.sock.close()


def bench_threads(address: tuple[str, int], calls: int, callers: int) -> float:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()
    clients: list[BlockingClient] = []

    def caller(n: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = BlockingClient(address)
            clients.append(client)
        for _ in range(n):
            if client.call("echo", PAYLOAD) != PAYLOAD:
                raise AssertionError("wrong echo")

    with ThreadPoolExecutor(max_workers=callers) as pool:
        list(pool.map(caller, [20] * callers))  # warm up: one connection per thread
        start = time.perf_counter()
        list(pool.map(caller, [calls // callers] * callers))
        elapsed = time.perf_counter() - start
    for client in clients:
        client.close()
    return calls / elapsed


def bench_grpc(address: tuple[str, int], calls: int, callers: int) -> float:
    import asyncio

    import grpc

    async def main() -> float:
        async with grpc.aio.insecure_channel(f"{address[0]}:{address[1]}") as channel:
            echo = channel.unary_unary(GRPC_METHOD)

            async def caller(n: int) -> None:
                for _ in range(n):
                    if await echo(PAYLOAD) != PAYLOAD:
                        raise AssertionError("wrong echo")

            await caller(200)
            start = time.perf_counter()
            await asyncio.gather(*(caller(calls // callers) for _ in range(callers)))
            return time.perf_counter() - start

    return calls / asyncio.run(main())


# ---------------------------------------------------------------------------- driver
def _start_server(kind: str, loop: str) -> tuple[subprocess.Popen, tuple[str, int]]:
    cmd = [sys.executable, __file__, "--serve", kind, "--loop", loop]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        proc.kill()
        raise RuntimeError(f"{kind} server did not start")
    host, port = json.loads(line)
    return proc, (host, port)


def _stop_server(proc: subprocess.Popen) -> None:
    proc.stdin.close()  # type: ignore[union-attr]
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _run_client(kind: str, address: tuple[str, int], calls: int, callers: int, loop: str) -> float:
    cmd = [sys.executable, __file__, "--client", kind, "--address", json.dumps(address),
           "--calls", str(calls), "--callers", str(callers), "--loop", loop]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True, timeout=600).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure (median reported)")
    ap.add_argument("--calls", type=int, default=20_000, help="calls per run with 100 callers")
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--serve", choices=["dhaga", "grpc"], help=argparse.SUPPRESS)
    ap.add_argument("--client", choices=["dhaga", "threads", "grpc"], help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    ap.add_argument("--callers", type=int, default=CALLERS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.serve == "dhaga":
        serve_dhaga(args.loop)
        return 0
    if args.serve == "grpc":
        serve_grpc()
        return 0
    if args.client:
        address = tuple(json.loads(args.address))
        fn = {"dhaga": lambda: bench_dhaga(address, args.calls, args.callers, args.loop),
              "threads": lambda: bench_threads(address, args.calls, args.callers),
              "grpc": lambda: bench_grpc(address, args.calls, args.callers)}[args.client]
        print(fn())
        return 0

    try:
        import grpc  # noqa: F401
        have_grpc = True
    except ImportError:
        have_grpc = False
        print("grpcio is not installed (pip install -e '.[bench]'): skipping its rows")

    single = max(args.calls // 4, 1000)
    rows = [  # (label, server, client, callers, calls)
        ("dhaga.rpc shared Client, 1 caller", "dhaga", "dhaga", 1, single),
        ("dhaga.rpc shared Client, 100 callers", "dhaga", "dhaga", CALLERS, args.calls),
        ("blocking client, 1 thread", "dhaga", "threads", 1, single),
        ("ThreadPoolExecutor(100), client/thread", "dhaga", "threads", CALLERS, args.calls),
    ]
    if have_grpc:
        rows += [
            ("grpcio asyncio unary, 1 caller", "grpc", "grpc", 1, single),
            ("grpcio asyncio unary, 100 callers", "grpc", "grpc", CALLERS, args.calls),
        ]
    results: dict[str, float] = {}
    print(f"echo of {len(PAYLOAD)} bytes, loop={args.loop}, median of {args.repeat} runs, "
          f"{os.cpu_count()} CPUs", flush=True)
    for label, server_kind, client_kind, callers, calls in rows:
        proc, address = _start_server(server_kind, args.loop)
        try:
            runs = [_run_client(client_kind, address, calls, callers, args.loop)
                    for _ in range(args.repeat)]
        finally:
            _stop_server(proc)
        results[label] = statistics.median(runs)
        print(f"  {label:<42} {results[label]:>10,.0f} calls/s", flush=True)

    def ratio(a: str, b: str) -> str:
        return f"{results[a] / results[b]:.2f}x" if a in results and b in results else "n/a"

    print("\nratios (dhaga.rpc / peer):")
    print(f"  100 callers vs ThreadPoolExecutor(100):  "
          f"{ratio(rows[1][0], rows[3][0])}   (goal: >= 2x)")
    print(f"  1 caller vs blocking client, 1 thread:   {ratio(rows[0][0], rows[2][0])}")
    if have_grpc:
        print(f"  100 callers vs grpcio asyncio:            "
              f"{ratio(rows[1][0], rows[5][0])}   (goal: >= 1.0x)")
        print(f"  1 caller vs grpcio asyncio:               {ratio(rows[0][0], rows[4][0])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
