"""Hostile msgpack-rpc clients against a dhaga.rpc server: what they cost it, what others see.

The server runs in its own process; the attackers and a probe client (plain stdlib sockets and
the msgpack package, no dhaga) run in this one. Four scenarios, each printed as a table row:

- ``decoder``: a Decoder alone fed ``0xdd`` + count + ``0x90`` x count (an array announcing
  ``--elements`` empty arrays; ``nested``: half as many ``[[]]``) in 32 KiB pieces, in a fresh
  interpreter: its peak RSS, CPU time, longest ``feed()``, and what the decoder said;
- ``bomb``: the same bytes sent to a live server while a probe client calls ``echo`` every
  10 ms: the server's peak and final RSS, the probe's worst and median latency;
- ``flood``: ``--calls`` pipelined calls to a method that sleeps, then the client vanishes:
  the server's live dhagas and RSS while it is flooded and after the client has gone;
- ``idle``: ``--rounds`` rounds of ``--clients`` connections that make one call and stay idle:
  the server's RSS per connection and its RSS after each round's clients have left.

Usage::

    python benchmarks/bench_rpc_hostile.py [--elements 16777216] [--calls 100000]
        [--clients 5000] [--rounds 3] [--only decoder,bomb,flood,idle]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bomb(elements: int, nested: bool = False) -> bytes:
    """An array announcing ``elements`` empty arrays (or, nested, one-element arrays of one)."""
    if nested:
        return b"\xdd" + (elements // 2).to_bytes(4, "big") + b"\x91\x90" * (elements // 2)
    return b"\xdd" + elements.to_bytes(4, "big") + b"\x90" * elements


# ---------------------------------------------------------------------------- child processes
def run_decoder(elements: int, nested: bool) -> None:
    from dhaga.codecs.msgpack_rpc import Decoder

    data = bomb(elements, nested)
    worst = 0.0
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = time.process_time()
    decoder = Decoder(max_message_size=max(len(data), 1 << 20))
    outcome = "accepted"
    try:
        view = memoryview(data)
        for i in range(0, len(data), 32768):
            t = time.perf_counter()
            try:
                decoder.feed(view[i : i + 32768])
            finally:
                worst = max(worst, time.perf_counter() - t)
    except Exception as exc:  # noqa: BLE001 - reported
        outcome = f"{type(exc).__name__}"
    cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    print(json.dumps({"peak_mib": peak / 1024, "cpu_s": cpu, "worst_feed_ms": worst * 1e3,
                      "outcome": outcome}))


def serve() -> None:
    import dhaga
    from dhaga import rpc

    server = rpc.Server()
    server.register("echo", lambda data: data)
    server.register("slow", lambda: dhaga.sleep(60))
    server.register("alive", lambda: dhaga.get_scheduler().alive)
    address = server.listen(("127.0.0.1", 0))
    print(json.dumps(list(address)), flush=True)

    def main() -> None:
        server.start()
        dhaga.to_thread(sys.stdin.read)  # the driver closes our stdin to stop us
        server.stop(timeout=0)

    dhaga.run(main)


# ---------------------------------------------------------------------------- the driver's side
class Server:
    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT)
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self.address = tuple(json.loads(self.proc.stdout.readline()))

    def status(self, key: str) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # MiB
        raise KeyError(key)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Caller:
    """A blocking msgpack-rpc client on a plain socket."""

    def __init__(self, address: tuple) -> None:
        self.sock = socket.create_connection(address)
        self.unpacker = msgpack.Unpacker()
        self.msgid = 0

    def call(self, method: str, *args: object, timeout: float = 60) -> object:
        self.msgid += 1
        self.sock.settimeout(timeout)
        self.sock.sendall(msgpack.packb([0, self.msgid, method, list(args)]))
        while True:
            for msg in self.unpacker:
                return msg[3]
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.unpacker.feed(data)

    def close(self) -> None:
        self.sock.close()


def scenario_bomb(elements: int) -> dict:
    server = Server()
    try:
        probe = Caller(server.address)
        probe.call("echo", b"x")
        base = server.status("VmRSS")
        latencies: list[float] = []
        stop = threading.Event()

        def probing() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    probe.call("echo", b"x")
                except OSError:
                    latencies.append(float("inf"))
                    return
                latencies.append(time.perf_counter() - t)
                time.sleep(0.01)

        thread = threading.Thread(target=probing)
        thread.start()
        attacker = socket.create_connection(server.address)
        start = time.perf_counter()
        try:
            attacker.sendall(bomb(elements))
            attacker.settimeout(30)
            attacker.recv(1)  # the server closes (or answers) when it has judged the message
        except OSError:
            pass
        judged = time.perf_counter() - start
        time.sleep(1.0)
        stop.set()
        thread.join()
        attacker.close()
        time.sleep(0.5)
        return {"rss_base_mib": base, "rss_peak_mib": server.status("VmHWM"),
                "rss_after_mib": server.status("VmRSS"), "judged_s": judged,
                "probe_max_ms": max(latencies) * 1e3,
                "probe_p50_ms": statistics.median(latencies) * 1e3, "probes": len(latencies)}
    finally:
        server.close()


def scenario_flood(calls: int) -> dict:
    server = Server()
    try:
        probe = Caller(server.address)
        base_alive = probe.call("alive")
        base = server.status("VmRSS")
        flooder = socket.create_connection(server.address)
        wire = b"".join(msgpack.packb([0, i, "slow", []]) for i in range(calls))
        sender = threading.Thread(target=lambda: _send_quietly(flooder, wire))
        sender.start()
        sender.join(20)
        time.sleep(2.0)
        alive_flooded = probe.call("alive")
        rss_flooded = server.status("VmRSS")
        flooder.close()
        time.sleep(2.0)
        return {"input_mb": len(wire) / 1e6, "alive_before": base_alive,
                "alive_flooded": alive_flooded, "rss_base_mib": base,
                "rss_flooded_mib": rss_flooded, "sent_all": not sender.is_alive(),
                "alive_after_client_gone": probe.call("alive")}
    finally:
        server.close()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.settimeout(15)
        sock.sendall(data)
    except OSError:
        pass


def scenario_idle(clients: int, rounds: int) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = Server()
    try:
        probe = Caller(server.address)
        probe.call("echo", b"x")
        time.sleep(0.2)
        base = server.status("VmRSS")
        out: dict = {"rss_base_mib": base, "per_conn_kib": [], "rss_after_mib": []}
        payload = msgpack.packb([0, 1, "echo", [b"x" * 100]])
        for _ in range(rounds):
            socks = []
            for _ in range(clients):
                s = socket.create_connection(server.address)
                s.sendall(payload)
                socks.append(s)
            for s in socks:
                s.settimeout(30)
                s.recv(1024)
            probe.call("echo", b"x")
            time.sleep(0.5)
            out["per_conn_kib"].append((server.status("VmRSS") - base) * 1024 / clients)
            for s in socks:
                s.close()
            time.sleep(1.0)
            probe.call("echo", b"x")
            out["rss_after_mib"].append(server.status("VmRSS"))
        return out
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--decoder", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--nested", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--elements", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="decoder,bomb,flood,idle")
    args = parser.parse_args()
    if args.serve:
        return serve()
    if args.decoder is not None:
        return run_decoder(args.decoder, args.nested)
    only = args.only.split(",")
    env = dict(os.environ, PYTHONPATH=ROOT)
    if "decoder" in only:
        for shape in ([], ["--nested"]):
            out = subprocess.run([sys.executable, __file__, "--decoder", str(args.elements)]
                                 + shape, capture_output=True, text=True, env=env,
                                 check=True).stdout
            print("decoder" + " nested" * bool(shape), json.dumps(json.loads(out)), flush=True)
    if "bomb" in only:
        print("bomb", json.dumps(scenario_bomb(args.elements)), flush=True)
    if "flood" in only:
        print("flood", json.dumps(scenario_flood(args.calls)), flush=True)
    if "idle" in only:
        print("idle", json.dumps(scenario_idle(args.clients, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
