"""CURVE messaging benchmark: PUSH/PULL throughput over CURVE, dhaga.mq vs pyzmq (libzmq), same run.

Each side runs in its own fresh interpreter (two processes per measurement), on 127.0.0.1 TCP;
the PULL side binds as the CURVE server, the PUSH side connects as the client. Messages per
second at the receiver, from its first message to its last, for 64-byte and 4 KiB messages;
dhaga on asyncio's loop (and uvloop when installed) against pyzmq with plain blocking threads.
Each run also reports the CPU time both processes spent per message (all threads, kernel
included): on a loaded machine it moves less than the rate. ``--null`` adds the same
measurements without security, for scale. Medians of ``--repeat`` runs and the goals' ratios
(>= 0.5x pyzmq at 64 B, >= 0.8x at 4 KiB) are printed.

``--instructions`` counts instead the instructions each end executes per message, under
valgrind's callgrind (runs of N and 3N messages; the difference over 2N leaves start-up and the
handshake out): the same binary and inputs give the same count whatever else loads the machine.
It counts user-space instructions only (not the kernel's), libzmq's I/O threads included. Usage::

    python benchmarks/bench_mq_curve.py [--repeat 5] [--messages 100000] [--null] [--json out]
                                        [--sizes 64,4096] [--impls dhaga,pyzmq]
    python benchmarks/bench_mq_curve.py --instructions [--messages 5000] [--sizes 64,4096]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

SERVER_PUBLIC = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"  # RFC 32's example certificates
SERVER_SECRET = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
CLIENT_PUBLIC = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
CLIENT_SECRET = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"


def _options(curve: bool, server: bool) -> dict:
    if not curve:
        return {}
    if server:
        return {"curve_server": True, "curve_publickey": SERVER_PUBLIC,
                "curve_secretkey": SERVER_SECRET}
    return {"curve_serverkey": SERVER_PUBLIC, "curve_publickey": CLIENT_PUBLIC,
            "curve_secretkey": CLIENT_SECRET}


# Each side returns {"value": ..., "cpu": seconds}: the value is the receiver's rate (PULL), None
# for the sender; "cpu" is the CPU time (all the process's threads, kernel included) its part of
# the exchange took, from the first message on (the receiver's from the second).
def dhaga_side(role: str, port: int, n: int, size: int, curve: bool, loop: str) -> dict:
    import dhaga
    from dhaga import mq

    dhaga.use_loop(loop)
    payload = b"m" * size

    def pull() -> dict:
        sock = mq.Socket(mq.PULL, **_options(curve, True))
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
        sock = mq.Socket(mq.PUSH, **_options(curve, False))
        sock.connect(f"tcp://127.0.0.1:{port}")
        send = sock.send
        c = time.process_time()
        for _ in range(n):
            send(payload)
        sock.close()  # linger: until everything went out
        return {"value": None, "cpu": time.process_time() - c}

    return dhaga.run(pull if role == "pull" else push)  # type: ignore[no-any-return]


def pyzmq_side(role: str, port: int, n: int, size: int, curve: bool) -> dict:
    import zmq

    ctx = zmq.Context()
    payload = b"m" * size
    if role == "pull":
        sock = ctx.socket(zmq.PULL)
        for name, value in _options(curve, True).items():
            setattr(sock, name, value.encode() if isinstance(value, str) else value)
        _announce(f"tcp://127.0.0.1:{sock.bind_to_random_port('tcp://127.0.0.1')}")
        sock.recv()
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n - 1):
            sock.recv()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        sock.close(0)
        ctx.term()
        return {"value": (n - 1) / wall, "cpu": cpu}
    sock = ctx.socket(zmq.PUSH)
    for name, value in _options(curve, False).items():
        setattr(sock, name, value.encode() if isinstance(value, str) else value)
    sock.connect(f"tcp://127.0.0.1:{port}")
    c = time.process_time()
    for _ in range(n):
        sock.send(payload)
    sock.close()
    ctx.term()  # waits until everything went out
    return {"value": None, "cpu": time.process_time() - c}


def _announce(endpoint: str) -> None:
    print(endpoint.rsplit(":", 1)[1], flush=True)


def child(args: argparse.Namespace) -> None:
    if args.impl == "pyzmq":
        result = pyzmq_side(args.role, args.port, args.n, args.size, args.curve)
    else:
        loop = "uvloop" if args.impl == "dhaga-uvloop" else "asyncio"
        result = dhaga_side(args.role, args.port, args.n, args.size, args.curve, loop)
    print(json.dumps(result), flush=True)


def _run_pair(impl: str, n: int, size: int, curve: bool, wrap: list[str]) -> tuple[Any, Any]:
    """Both ends, each in its own process (under ``wrap``, e.g. valgrind); their outputs."""
    me = [*wrap, sys.executable, os.path.abspath(__file__), "--child", "--impl", impl, "--n",
          str(n), "--size", str(size)] + (["--curve"] if curve else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([*me, "--role", "pull"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE if wrap else None, text=True, env=env)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        client = subprocess.run([*me, "--role", "push", "--port", str(port)], check=True,
                                timeout=1800, env=env, capture_output=True, text=True)
        out, err = server.communicate(timeout=1800)
    finally:
        if server.poll() is None:
            server.kill()
    return (out, err), (client.stdout, client.stderr)


def measure(impl: str, n: int, size: int, curve: bool) -> tuple[float, float]:
    """One run: messages per second at the receiver, and CPU seconds per message (both ends)."""
    (out, _), (client_out, _) = _run_pair(impl, n, size, curve, [])
    pull = json.loads(out.strip().splitlines()[-1])
    push = json.loads(client_out.strip().splitlines()[-1])
    return float(pull["value"]), (pull["cpu"] + push["cpu"]) / n


def instructions(impl: str, n: int, size: int, curve: bool) -> tuple[float, float]:
    """Instructions per message at the receiver and at the sender (callgrind, 3N minus N)."""
    counts = []
    for k in (n, 3 * n):
        (_, pull_err), (_, push_err) = _run_pair(
            impl, k, size, curve, ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"])
        counts.append([int(re.search(r"Collected : (\d+)", err).group(1))  # type: ignore[union-attr]
                       for err in (pull_err, push_err)])
    return ((counts[1][0] - counts[0][0]) / (2 * n), (counts[1][1] - counts[0][1]) / (2 * n))


def available(impl: str) -> bool:
    try:
        if impl == "pyzmq":
            import zmq

            return bool(zmq.has("curve"))
        if impl == "dhaga-uvloop":
            import uvloop  # noqa: F401
        import nacl  # noqa: F401
    except ImportError:
        return False
    return True


def count_instructions(args: argparse.Namespace, impls: list[str], sizes: list[int]) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    n = args.messages if args.messages < 50_000 else 5_000
    print("| instructions per message | receiver | sender | both ends |")
    print("|---|---|---|---|")
    results = {}
    for curve in ([True, False] if args.null else [True]):
        for size in sizes:
            for impl in impls:
                if impl == "dhaga-uvloop":
                    continue  # the loop's C code is not the question here
                pull, push = instructions(impl, n if size < 1024 else max(n // 2, 500), size,
                                          curve)
                key = f"{'CURVE' if curve else 'NULL'} {size} B {impl}"
                results[key] = pull + push
                print(f"| {key} | {pull:,.0f} | {push:,.0f} | {pull + push:,.0f} |", flush=True)
    for size in sizes:
        mine, base = results.get(f"CURVE {size} B dhaga"), results.get(f"CURVE {size} B pyzmq")
        if mine and base:
            print(f"CURVE {size:>4} B: pyzmq's instructions / dhaga's = {base / mine:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--null", action="store_true", help="also measure without security")
    parser.add_argument("--sizes", default="64,4096", help="message sizes, comma-separated")
    parser.add_argument("--impls", default="dhaga,dhaga-uvloop,pyzmq")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per message (callgrind) instead of timing")
    parser.add_argument("--json", help="write the medians here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--curve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    impls = [i for i in args.impls.split(",") if available(i)]
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.instructions:
        count_instructions(args, impls, sizes)
        return
    results: dict[str, float] = {}
    cpus: dict[str, float] = {}
    for curve in ([True, False] if args.null else [True]):
        for size in sizes:
            n = args.messages if size < 1024 else max(args.messages // 4, 1000)
            for impl in impls:
                runs = [measure(impl, n, size, curve) for _ in range(args.repeat)]
                key = f"{'curve' if curve else 'null'} {size}B {impl}"
                results[key] = statistics.median(rate for rate, _ in runs)
                cpus[key] = statistics.median(cpu for _, cpu in runs)
                print(f"{key:28} {results[key]:>12,.0f} msg/s {cpus[key] * 1e6:6.2f} µs CPU/msg "
                      "(runs: " + ", ".join(f"{rate:,.0f}" for rate, _ in runs) + ")", flush=True)
    print()
    goals = {64: 0.5, 4096: 0.8}
    for size in sizes:
        base = results.get(f"curve {size}B pyzmq")
        for impl in ("dhaga", "dhaga-uvloop"):
            mine = results.get(f"curve {size}B {impl}")
            if base and mine:
                goal = f" (goal >= {goals[size]}x)" if size in goals else ""
                cpu = cpus[f"curve {size}B pyzmq"] / cpus[f"curve {size}B {impl}"]
                print(f"CURVE {size:>4} B {impl:13} / pyzmq = {mine / base:.2f}x{goal}; "
                      f"pyzmq's CPU per message / dhaga's = {cpu:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rate": results, "cpu_per_message": cpus}, f, indent=2)


if __name__ == "__main__":
    main()
