"""Command line for the Clone pattern: run a server, or get, set, watch and dump keys.

    python -m dhaga.mq.clone server [--primary|--backup --peer tcp://host:Q] [--bind tcp://host:P]
    python -m dhaga.mq.clone client --servers tcp://host:P[,tcp://host:Q] get KEY
    python -m dhaga.mq.clone client --servers ... set KEY VALUE [--ttl SECONDS]
    python -m dhaga.mq.clone client --servers ... delete KEY
    python -m dhaga.mq.clone client --servers ... watch [--subtree PREFIX]
    python -m dhaga.mq.clone client --servers ... dump [--subtree PREFIX]

A server prints ``ready snapshot=... publisher=... collector=... state=... role=...`` once it
listens, and ``state ACTIVE`` / ``state PASSIVE`` when its Binary Star state changes; SIGTERM
or SIGINT stops it with status 0. ``watch`` prints ``set KEY VALUE``, ``del KEY`` and, after
each snapshot, ``synced SEQUENCE SERVER``, one line each, flushed. This module must not know
the protocol: it only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from ...errors import Timeout
from ...scheduler import get_scheduler, run, spawn
from ..bstar import State
from ..errors import SplitBrain
from .client import Change, CloneClient, Watch
from .endpoints import ServerEndpoints
from .keys import read_keys, write_keys
from .server import CloneServer

log = logging.getLogger("dhaga.mq.clone")


def _say(line: str) -> None:
    print(line, flush=True)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


def _print_change(change: Change) -> None:
    if change.value is None:
        _say(f"del {change.key}")
    else:
        _say(f"set {change.key} {_text(change.value)}")


def serve(args: argparse.Namespace) -> int:
    if (args.primary or args.backup) != (args.peer is not None):
        _say("error: --primary/--backup and --peer go together")
        return 2
    server = CloneServer(
        args.bind,
        args.peer,
        primary=not args.backup,
        timeout=args.timeout,
        heartbeat=args.heartbeat,
        on_state=lambda state: _say(f"state {state.name}"),
        curve=_secret_keys(args.curve) if args.curve else None,
    )
    loop = get_scheduler().loop
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: spawn(server.close))
    try:
        ep = server.start()
        role = "backup" if args.backup else "primary" if args.primary else "alone"
        _say(
            f"ready snapshot={ep.snapshot} publisher={ep.publisher} collector={ep.collector} "
            f"state={ep.state} role={role}"
        )
        if server.peer is None:
            _say(f"state {State.ACTIVE.name}")
        server.serve_forever()
    except SplitBrain as exc:
        _say(f"stopped: {exc}")
        return 1
    finally:
        server.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def client(args: argparse.Namespace) -> int:
    servers = [s for s in args.servers.split(",") if s]
    subtree = args.subtree
    if args.command in ("get", "set", "delete"):
        subtree = args.key  # a snapshot of just that key (and keys it prefixes)
    watch: Watch | None = None

    def on_sync(server: ServerEndpoints, sequence: int) -> None:
        if watch is not None:  # the snapshot's changes first, then the marker
            while True:
                try:
                    _print_change(watch.get(timeout=0))
                except Timeout:
                    break
            _say(f"synced {sequence} {server.snapshot}")

    curve = None
    if args.curve or args.server_key:
        if not (args.curve and args.server_key):
            _say("error: --curve and --server-key go together")
            return 2
        curve = (read_keys(args.server_key)[0], *_secret_keys(args.curve))
    with CloneClient(
        servers, subtree, timeout=args.timeout, on_sync=on_sync, curve=curve
    ) as replica:
        if args.command == "watch":
            watch = replica.watch()
        if not replica.wait_synced(args.wait):
            print(f"error: no server answered within {args.wait}s", file=sys.stderr)
            return 2
        if args.command == "get":
            value = replica.get(args.key)
            if value is None:
                print(f"{args.key}: not set", file=sys.stderr)
                return 1
            _say(_text(value))
        elif args.command in ("set", "delete"):
            value = args.value.encode() if args.command == "set" else b""
            replica.set(
                args.key, value, ttl=args.ttl if args.command == "set" else None
            )
            if not replica.flush(args.wait):
                print("error: the update was not confirmed", file=sys.stderr)
                return 2
            _say("ok")
        elif args.command == "dump":
            _say(json.dumps({k: _text(v) for k, v in sorted(replica.items())}))
        else:
            assert watch is not None
            for change in watch:
                _print_change(change)
    return 0


def _secret_keys(path: str) -> tuple[str, str]:
    public, secret = read_keys(path)
    if secret is None:
        raise SystemExit(f"error: {path} holds no secret key (give the *_secret file)")
    return public, secret


def keygen(args: argparse.Namespace) -> int:
    public, _ = write_keys(args.path)
    _say(f"public key {public} in {args.path}; key pair in {args.path}_secret")
    return 0


def _options() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dhaga.mq.clone",
        description="Clone pattern (ZeroMQ RFC 12) server and client.",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = ap.add_subparsers(dest="role", required=True)
    srv = sub.add_parser(
        "server", help="run a server (alone, or one of a Binary Star pair)"
    )
    who = srv.add_mutually_exclusive_group()
    who.add_argument("--primary", action="store_true", help="the pair's primary")
    who.add_argument("--backup", action="store_true", help="the pair's backup")
    srv.add_argument(
        "--bind",
        default="tcp://127.0.0.1:*",
        help="tcp://host:P: ports P (snapshot), P+1 (publisher), P+2 (collector), "
        "P+3 (Binary Star); port * picks a free block",
    )
    srv.add_argument("--peer", help="the other server's tcp://host:Q")
    srv.add_argument(
        "--timeout",
        type=float,
        default=2.0,
        help="seconds of peer silence before failover",
    )
    srv.add_argument(
        "--heartbeat", type=float, default=1.0, help="seconds between HUGZ"
    )
    srv.add_argument("--curve", metavar="KEYFILE_secret",
                     help="encrypt with CURVE, with this key pair (from 'keygen'); a pair's "
                     "two servers share it")
    cli = sub.add_parser("client", help="read, write or watch the map")
    cli.add_argument(
        "--servers",
        required=True,
        help="comma-separated tcp://host:P of each server, primary first",
    )
    cli.add_argument(
        "--timeout",
        type=float,
        default=2.0,
        help="seconds of server silence before failing over",
    )
    cli.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds to wait for a server to answer",
    )
    cli.add_argument("--curve", metavar="KEYFILE_secret",
                     help="reach CURVE servers with this key pair (from 'keygen')")
    cli.add_argument("--server-key", metavar="KEYFILE",
                     help="the servers' public key file (with --curve)")
    gen = sub.add_parser("keygen", help="make a CURVE key pair: PATH and PATH_secret")
    gen.add_argument("path")
    cmd = cli.add_subparsers(dest="command", required=True)
    get = cmd.add_parser("get", help="print a key's value")
    get.add_argument("key")
    put = cmd.add_parser("set", help="set a key")
    put.add_argument("key")
    put.add_argument("value")
    put.add_argument("--ttl", type=float, help="seconds before the server deletes it")
    dele = cmd.add_parser("delete", help="delete a key")
    dele.add_argument("key")
    for name in ("watch", "dump"):
        p = cmd.add_parser(
            name,
            help="print changes as they come"
            if name == "watch"
            else "print the map as JSON",
        )
        p.add_argument("--subtree", default="", help="only keys starting with this")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _options().parse_args(argv)
    if not hasattr(args, "subtree"):
        args.subtree = ""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.role == "keygen":
        return keygen(args)
    return run(serve if args.role == "server" else client, args)


if __name__ == "__main__":
    sys.exit(main())
