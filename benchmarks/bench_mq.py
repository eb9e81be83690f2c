"""Messaging benchmarks: PUSH/PULL throughput and REQ/REP round trips, dhaga.mq vs pyzmq.

Each side of each measurement runs in its own fresh interpreter (two processes per run), on
127.0.0.1 TCP:

- ``pushpull``: 64-byte messages, PUSH -> PULL; messages per second at the receiver, from its
  first message to its last. dhaga (asyncio loop, and uvloop when installed) against pyzmq
  with plain blocking threads and against pyzmq's ``zmq.green`` under gevent.
- ``reqrep``: 64-byte request/reply round trips; dhaga against ``zmq.green`` under gevent and
  plain pyzmq.

Medians of ``--repeat`` runs, and the goals' ratios, are printed. Usage::

    python benchmarks/bench_mq.py [--repeat 5] [--messages 200000] [--trips 20000] [--json out]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PAYLOAD = b"m" * 64


# ---------------------------------------------------------------------------- one side each
# Each side returns {"value": ..., "cpu": seconds}: the value is the receiver's rate (PULL) or
# the client's seconds per round trip (REQ), None for the other side; "cpu" is the CPU time
# (all the process's threads, kernel included) its part of the exchange took.
def dhaga_side(role: str, port: int, n: int, loop: str) -> dict:
    import dhaga
    from dhaga import mq

    dhaga.use_loop(loop)

    def pull() -> dict:
        sock = mq.Socket(mq.PULL)
        _announce(sock.bind("tcp://127.0.0.1:*"))
        recv = sock.recv
        recv()
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n - 1):
            recv()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        sock.close(linger=0)
        return {"value": (n - 1) / wall, "cpu": cpu}

    def push() -> dict:
        sock = mq.Socket(mq.PUSH)
        sock.connect(f"tcp://127.0.0.1:{port}")
        send = sock.send
        c = time.process_time()
        for _ in range(n):
            send(PAYLOAD)
        sock.close()  # linger: until everything went out
        return {"value": None, "cpu": time.process_time() - c}

    def rep() -> dict:
        sock = mq.Socket(mq.REP)
        _announce(sock.bind("tcp://127.0.0.1:*"))
        recv, send = sock.recv, sock.send
        send(recv())
        c = time.process_time()
        for _ in range(n):
            send(recv())
        cpu = time.process_time() - c
        sock.close()
        return {"value": None, "cpu": cpu}

    def req() -> dict:
        sock = mq.Socket(mq.REQ)
        sock.connect(f"tcp://127.0.0.1:{port}")
        send, recv = sock.send, sock.recv
        send(PAYLOAD)
        recv()
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            send(PAYLOAD)
            recv()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        sock.close(linger=0)
        return {"value": wall / n, "cpu": cpu}

    return dhaga.run({"pull": pull, "push": push, "rep": rep, "req": req}[role])


def pyzmq_side(role: str, port: int, n: int, green: bool) -> dict:
    if green:
        import zmq.green as zmq
    else:
        import zmq
    ctx = zmq.Context()
    result: dict = {"value": None}
    if role == "pull":
        sock = ctx.socket(zmq.PULL)
        _announce(f"tcp://127.0.0.1:{sock.bind_to_random_port('tcp://127.0.0.1')}")
        recv = sock.recv
        recv()
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n - 1):
            recv()
        result = {"value": (n - 1) / (time.perf_counter() - t), "cpu": time.process_time() - c}
        sock.close(0)
    elif role == "push":
        sock = ctx.socket(zmq.PUSH)
        sock.connect(f"tcp://127.0.0.1:{port}")
        send = sock.send
        c = time.process_time()
        for _ in range(n):
            send(PAYLOAD)
        sock.close(-1)
        ctx.term()  # waits until everything went out
        return {"value": None, "cpu": time.process_time() - c}
    elif role == "rep":
        sock = ctx.socket(zmq.REP)
        _announce(f"tcp://127.0.0.1:{sock.bind_to_random_port('tcp://127.0.0.1')}")
        sock.send(sock.recv())
        c = time.process_time()
        for _ in range(n):
            sock.send(sock.recv())
        result["cpu"] = time.process_time() - c
        sock.close(-1)
    else:
        sock = ctx.socket(zmq.REQ)
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send(PAYLOAD)
        sock.recv()
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            sock.send(PAYLOAD)
            sock.recv()
        result = {"value": (time.perf_counter() - t) / n, "cpu": time.process_time() - c}
        sock.close(0)
    ctx.term()
    return result


def _announce(endpoint: str) -> None:
    print(endpoint.rsplit(":", 1)[1], flush=True)


def child(args: argparse.Namespace) -> None:
    impl = args.impl
    if impl.startswith("dhaga"):
        result = dhaga_side(args.role, args.port, args.n, "uvloop" if impl == "dhaga-uvloop" else
                            "asyncio")
    else:
        result = pyzmq_side(args.role, args.port, args.n, green=impl == "zmq.green")
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------- the driver
def measure(workload: str, impl: str, n: int) -> tuple[float, float]:
    """One run: the server side in one process, the client side in another.

    Returns:
        the run's figure (messages per second, or seconds per round trip), and the CPU time
        both processes spent per message (or round trip).
    """
    server_role, client_role = ("pull", "push") if workload == "pushpull" else ("rep", "req")
    me = [sys.executable, os.path.abspath(__file__), "--child", "--impl", impl, "--n", str(n)]
    server = subprocess.Popen([*me, "--role", server_role], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        client = subprocess.run([*me, "--role", client_role, "--port", str(port)],
                                capture_output=True, text=True, timeout=300, check=True)
        out, _ = server.communicate(timeout=300)
    finally:
        server.kill() if server.poll() is None else None
    server_result = json.loads(out.strip().splitlines()[-1])
    client_result = json.loads(client.stdout.strip().splitlines()[-1])
    value = (server_result if workload == "pushpull" else client_result)["value"]
    return value, (server_result["cpu"] + client_result["cpu"]) / n


def available(impl: str) -> bool:
    try:
        if impl == "dhaga-uvloop":
            import uvloop  # noqa: F401
        elif impl == "zmq.green":
            import gevent  # noqa: F401
            import zmq.green  # noqa: F401
        elif impl == "pyzmq":
            import zmq  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--trips", type=int, default=20_000)
    parser.add_argument("--json", help="write the medians here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    impls = [i for i in ("dhaga", "dhaga-uvloop", "pyzmq", "zmq.green") if available(i)]
    results: dict[str, dict[str, float]] = {"pushpull": {}, "reqrep": {}}
    cpu: dict[str, dict[str, float]] = {"pushpull": {}, "reqrep": {}}
    for workload, n in (("pushpull", args.messages), ("reqrep", args.trips)):
        runs: dict[str, list[tuple[float, float]]] = {i: [] for i in impls}
        for _ in range(args.repeat):
            for impl in impls:  # interleaved, so that a noisy moment hits every peer alike
                runs[impl].append(measure(workload, impl, n))
        for impl in impls:
            results[workload][impl] = statistics.median(v for v, _ in runs[impl])
            cpu[workload][impl] = statistics.median(c for _, c in runs[impl])
    push, trips = results["pushpull"], results["reqrep"]
    print(f"PUSH/PULL, 64-byte messages, {args.messages} per run, median of {args.repeat} "
          "(CPU: both processes, all threads, per message):")
    for impl, rate in push.items():
        print(f"  {impl:<14} {rate:>12,.0f} msg/s   CPU {cpu['pushpull'][impl] * 1e6:6.2f} us")
    print(f"REQ/REP round trips, {args.trips} per run, median of {args.repeat}:")
    for impl, secs in trips.items():
        print(f"  {impl:<14} {secs * 1e6:>10.1f} us per round trip   "
              f"CPU {cpu['reqrep'][impl] * 1e6:6.1f} us")
    print("Goals:")
    if "pyzmq" in push:
        ratio = push["dhaga"] / push["pyzmq"]
        print(f"  PUSH/PULL dhaga / pyzmq threads: {ratio:.2f}x (goal >= 0.5x)")
    if "zmq.green" in push:
        ratio = push["dhaga"] / push["zmq.green"]
        print(f"  PUSH/PULL dhaga / zmq.green:     {ratio:.2f}x (goal >= 3x)")
        print(f"  REQ/REP   dhaga / zmq.green:     {trips['zmq.green'] / trips['dhaga']:.2f}x "
              "(goal >= 1.0x, in round trips per second)")
    if "pyzmq" in push:
        ratio = cpu["pushpull"]["pyzmq"] / cpu["pushpull"]["dhaga"]
        print(f"  (CPU per message, pyzmq / dhaga: {ratio:.2f}x: "
              "a ratio a busy machine distorts less than wall-clock rates)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"median": results, "cpu_per_message": cpu}, f, indent=2)


if __name__ == "__main__":
    main()
