"""The demo's messaging part: ZeroMQ-style patterns between dhagas of one OS thread, over TCP.

Three measurements, each with its results checked: a PUSH/PULL pipeline streaming small
messages; many REQ clients served through a ROUTER/DEALER proxy by REP workers whose every
request blocks for a while; a PUB fanning out to SUBs that each keep one topic. This module
uses only dhaga's public API and the standard library; ``python -m dhaga.demo.mq`` prints the
figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import dhaga

from .. import mq

__all__ = ["part_messaging"]

TCP = "tcp://127.0.0.1:*"


def _pipeline(messages: int) -> dict[str, Any]:
    pull, push = mq.Socket(mq.PULL), mq.Socket(mq.PUSH)
    push.connect(pull.bind(TCP))
    payload = b"m" * 64

    def produce() -> None:
        for _ in range(messages):
            push.send(payload)

    start = time.perf_counter()
    producer = dhaga.spawn(produce)
    received = sum(len(pull.recv()) == 64 for _ in range(messages))
    seconds = time.perf_counter() - start
    producer.result()
    push.close()
    pull.close()
    return {"messages": received, "seconds": seconds, "per_second": received / seconds}


def _request_reply(clients: int, requests: int, workers: int, latency: float) -> dict[str, Any]:
    frontend, backend = mq.Socket(mq.ROUTER, linger=0), mq.Socket(mq.DEALER, linger=0)
    front, back = frontend.bind(TCP), backend.bind(TCP)
    device = dhaga.spawn(mq.proxy, frontend, backend)
    served = [0] * workers

    def work(n: int) -> None:
        with mq.Socket(mq.REP, linger=0) as rep:
            rep.connect(back)
            while True:
                x = int(rep.recv())
                dhaga.sleep(latency)  # stands for a slow database query
                served[n] += 1
                rep.send(b"%d" % (x * x))

    def client(c: int) -> int:
        with mq.Socket(mq.REQ, linger=0) as req:
            req.connect(front)
            total = 0
            for i in range(requests):
                x = c * requests + i
                req.send(b"%d" % x)
                reply = int(req.recv(timeout=60))
                if reply != x * x:
                    raise AssertionError(f"{x}² came back as {reply}")
                total += reply
            return total

    pool = [dhaga.spawn(work, n) for n in range(workers)]
    start = time.perf_counter()
    with dhaga.Group() as group:
        tasks = [group.spawn(client, c) for c in range(clients)]
    seconds = time.perf_counter() - start
    for w in pool:
        w.kill()
    device.kill()
    frontend.close()
    backend.close()
    n = clients * requests
    return {"requests": n, "total": sum(t.result() for t in tasks), "seconds": seconds,
            "serial_seconds": n * latency, "workers_used": sum(1 for s in served if s)}


def _fan_out(subscribers: int, messages: int) -> dict[str, Any]:
    pub = mq.Socket(mq.PUB, sndhwm=0, linger=0)
    endpoint = pub.bind(TCP)
    topics = [b"topic-%d:" % t for t in range(subscribers)]
    subs = []
    for topic in topics:
        sub = mq.Socket(mq.SUB, linger=0)
        sub.connect(endpoint)
        sub.subscribe(topic)
        subs.append(sub)
    for sub, topic in zip(subs, topics):  # make sure each subscription has arrived
        while True:
            pub.send(topic + b"probe")
            try:
                sub.recv(timeout=0.05)
                break
            except dhaga.Timeout:
                pass

    def drain(sub: mq.Socket, topic: bytes) -> int:
        count = 0
        while True:
            msg = sub.recv(timeout=10)
            if msg == topic + b"end":
                return count
            if msg.startswith(topic) and msg != topic + b"probe":
                count += 1

    readers = [dhaga.spawn(drain, sub, topic) for sub, topic in zip(subs, topics)]
    start = time.perf_counter()
    for i in range(messages):
        pub.send(topics[i % subscribers] + b"%d" % i)
    for topic in topics:
        pub.send(topic + b"end")
    delivered = [r.result(timeout=60) for r in readers]
    seconds = time.perf_counter() - start
    for sub in subs:
        sub.close()
    pub.close()
    expected = [len(range(t, messages, subscribers)) for t in range(subscribers)]
    if delivered != expected:
        raise AssertionError(f"subscribers got {delivered}, expected {expected}")
    return {"published": messages, "subscribers": subscribers, "delivered": sum(delivered),
            "seconds": seconds}


def part_messaging(messages: int = 200_000, clients: int = 200, requests: int = 5,
                   workers: int = 50, latency: float = 0.02,
                   subscribers: int = 10) -> dict[str, Any]:
    """Run the three measurements on this thread's scheduler, over 127.0.0.1 TCP.

    Args:
        messages: messages for the pipeline, and for the fan-out.
        clients, requests: REQ clients, and requests each sends one after another.
        workers, latency: REP workers behind the proxy, and each request's blocking time.
        subscribers: SUB sockets, one topic each.

    Returns:
        ``pipeline`` (messages, seconds, per_second), ``request_reply`` (requests, total,
        seconds, serial_seconds: what one worker would need, workers_used), ``fan_out``
        (published, subscribers, delivered, seconds), and ``threads`` (OS threads).
    """
    def main() -> dict[str, Any]:
        return {
            "pipeline": _pipeline(messages),
            "request_reply": _request_reply(clients, requests, workers, latency),
            "fan_out": _fan_out(subscribers, messages),
            "threads": threading.active_count(),
        }

    return dhaga.run(main)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dhaga.demo.mq", description=__doc__)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--requests", type=int, default=5)
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--subscribers", type=int, default=10)
    args = ap.parse_args(argv)
    print(json.dumps(part_messaging(args.messages, args.clients, args.requests, args.workers,
                                    args.latency, args.subscribers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
