"""CURVE messaging benchmark: PUSH/PULL throughput over CURVE, dhaga.mq vs pyzmq (libzmq), same run.

Each side runs in its own fresh interpreter (two processes per measurement), on 127.0.0.1 TCP;
the PULL side binds as the CURVE server, the PUSH side connects as the client. Messages per
second at the receiver, from its first message to its last, for 64-byte and 4 KiB messages;
dhaga on asyncio's loop (and uvloop when installed) against pyzmq with plain blocking threads.
``--null`` adds the same measurements without security, for scale. Medians of ``--repeat``
runs and the goals' ratios (>= 0.5x pyzmq at 64 B, >= 0.8x at 4 KiB) are printed. Usage::

    python benchmarks/bench_mq_curve.py [--repeat 5] [--messages 100000] [--null] [--json out]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

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


def dhaga_side(role: str, port: int, n: int, size: int, curve: bool, loop: str) -> float | None:
    import dhaga
    from dhaga import mq

    dhaga.use_loop(loop)
    payload = b"m" * size

    def pull() -> float:
        sock = mq.Socket(mq.PULL, **_options(curve, True))
        _announce(sock.bind("tcp://127.0.0.1:*"))
        recv = sock.recv
        recv()
        t = time.perf_counter()
        for _ in range(n - 1):
            recv()
        rate = (n - 1) / (time.perf_counter() - t)
        sock.close(linger=0)
        return rate

    def push() -> None:
        sock = mq.Socket(mq.PUSH, **_options(curve, False))
        sock.connect(f"tcp://127.0.0.1:{port}")
        send = sock.send
        for _ in range(n):
            send(payload)
        sock.close()  # linger: until everything went out

    return dhaga.run(pull if role == "pull" else push)  # type: ignore[no-any-return]


def pyzmq_side(role: str, port: int, n: int, size: int, curve: bool) -> float | None:
    import zmq

    ctx = zmq.Context()
    payload = b"m" * size
    if role == "pull":
        sock = ctx.socket(zmq.PULL)
        for name, value in _options(curve, True).items():
            setattr(sock, name, value.encode() if isinstance(value, str) else value)
        _announce(f"tcp://127.0.0.1:{sock.bind_to_random_port('tcp://127.0.0.1')}")
        sock.recv()
        t = time.perf_counter()
        for _ in range(n - 1):
            sock.recv()
        rate = (n - 1) / (time.perf_counter() - t)
        sock.close(0)
        ctx.term()
        return rate
    sock = ctx.socket(zmq.PUSH)
    for name, value in _options(curve, False).items():
        setattr(sock, name, value.encode() if isinstance(value, str) else value)
    sock.connect(f"tcp://127.0.0.1:{port}")
    for _ in range(n):
        sock.send(payload)
    sock.close()
    ctx.term()
    return None


def _announce(endpoint: str) -> None:
    print(endpoint.rsplit(":", 1)[1], flush=True)


def child(args: argparse.Namespace) -> None:
    if args.impl == "pyzmq":
        value = pyzmq_side(args.role, args.port, args.n, args.size, args.curve)
    else:
        loop = "uvloop" if args.impl == "dhaga-uvloop" else "asyncio"
        value = dhaga_side(args.role, args.port, args.n, args.size, args.curve, loop)
    if value is not None:
        print(json.dumps(value), flush=True)


def measure(impl: str, n: int, size: int, curve: bool) -> float:
    me = [sys.executable, __file__, "--child", "--impl", impl, "--n", str(n), "--size",
          str(size)] + (["--curve"] if curve else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([*me, "--role", "pull"], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        subprocess.run([*me, "--role", "push", "--port", str(port)], check=True, timeout=600,
                       env=env)
        out, _ = server.communicate(timeout=600)
        return float(json.loads(out.strip().splitlines()[-1]))
    finally:
        if server.poll() is None:
            server.kill()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--null", action="store_true", help="also measure without security")
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
    impls = [i for i in ("dhaga", "dhaga-uvloop", "pyzmq") if available(i)]
    results: dict[str, float] = {}
    for curve in ([True, False] if args.null else [True]):
        for size in (64, 4096):
            n = args.messages if size == 64 else max(args.messages // 4, 1000)
            for impl in impls:
                runs = [measure(impl, n, size, curve) for _ in range(args.repeat)]
                key = f"{'curve' if curve else 'null'} {size}B {impl}"
                results[key] = statistics.median(runs)
                print(f"{key:28} {results[key]:>12,.0f} msg/s  (runs: "
                      + ", ".join(f"{r:,.0f}" for r in runs) + ")", flush=True)
    print()
    for size, goal in ((64, 0.5), (4096, 0.8)):
        base = results.get(f"curve {size}B pyzmq")
        for impl in ("dhaga", "dhaga-uvloop"):
            mine = results.get(f"curve {size}B {impl}")
            if base and mine:
                print(f"CURVE {size:>4} B {impl:13} / pyzmq = {mine / base:.2f}x (goal >= {goal}x)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
