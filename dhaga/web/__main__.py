"""``python -m dhaga.web module:app``: serve a WSGI application, on one process or several.

Usage::

    python -m dhaga.web myproject.wsgi:application --bind 0.0.0.0:8000 --processes 4

The listening socket is bound first (``--bind 127.0.0.1:0`` picks a free port) and the line
``dhaga.web: serving ... on http://HOST:PORT`` is printed on stdout once the application
imported (with ``--processes`` > 1, once its module was found; each worker imports it). With ``--processes 1``
(the default) the server runs in this process; with more, a master process forks the workers,
which share the socket (or, with ``--reuse-port``, each listens on its own ``SO_REUSEPORT``
socket), and replaces any worker that dies. SIGTERM or SIGINT stops gracefully: no new
connections, requests in flight finish (within ``--graceful-timeout``), exit status 0; a
process whose dhagas are wedged exits with status 1 a few seconds after that (see
`dhaga.web._hardstop`), and at once on a second signal.

This module must not know HTTP: it parses options, loads the application, binds, and hands over
to `WSGIServer` and `dhaga.web.supervisor`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import signal
import socket
import sys
from typing import Any

__all__ = ["main", "load_app", "parse_bind"]

log = logging.getLogger("dhaga.web")


def parse_bind(text: str) -> Any:
    """``HOST:PORT``, ``[IPV6]:PORT``, ``:PORT`` (all interfaces) or ``unix:PATH``."""
    if text.startswith("unix:"):
        return text[5:]
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or unix:PATH, not {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return (host, int(port))


def load_app(spec: str) -> Any:
    """Import ``"package.module:attribute"`` (``application`` when no attribute is named)."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in (attr or "application").split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec} is not a WSGI application (not callable)")
    return obj


def _check_module(spec: str) -> None:
    """Fail before serving when the application's module cannot be found at all."""
    module_name = spec.partition(":")[0]
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    if importlib.util.find_spec(module_name) is None:
        raise ModuleNotFoundError(f"No module named {module_name!r}", name=module_name)


def _bind(address: Any, backlog: int, reuse_port: bool) -> socket.socket:
    if isinstance(address, str):
        if os.path.exists(address):
            os.unlink(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    addr = sock.getsockname()
    if isinstance(addr, str):
        return f"unix:{addr}"
    host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
    return f"http://{host}:{addr[1]}"


def _patch(args: argparse.Namespace) -> None:
    """Patch (``--monkey-patch``) and choose the loop: before the application is imported."""
    if args.monkey_patch:
        from .. import monkey  # type: ignore[attr-defined]

        monkey.patch_all()
    if args.loop:
        from ..scheduler import use_loop

        use_loop(args.loop)


def _serve(args: argparse.Namespace, listener: socket.socket, multiprocess: bool,
           parent: int | None, app: Any = None) -> None:
    """Run the server in this process until SIGTERM/SIGINT (a worker, or the only process)."""
    if app is None:
        _patch(args)
    from ..scheduler import get_scheduler, sleep, spawn
    from ._hardstop import HardStop
    from .server import WSGIServer

    if app is None:
        app = load_app(args.app)
    server = WSGIServer(
        app, listener, backlog=args.backlog, header_timeout=args.header_timeout,
        keepalive_timeout=args.keepalive_timeout, timeout=args.timeout,
        body_timeout=args.body_timeout or None,
        max_body_size=args.max_body_size or None, max_connections=args.max_connections,
        multiprocess=multiprocess,
    )
    loop = get_scheduler().loop

    def on_signal(sig: int) -> None:
        spawn(server.stop, args.graceful_timeout)

    # Taken by a plain signal handler (not the loop's), so that a wedged loop still exits.
    hard_stop = HardStop(loop.call_soon_threadsafe, on_signal, args.graceful_timeout).install()

    def watch_parent() -> None:
        while os.getppid() == parent:
            sleep(1.0)
        log.warning("worker %d: the master process is gone; stopping", os.getpid())
        on_signal(signal.SIGTERM)

    watcher = spawn(watch_parent) if parent is not None else None
    try:
        server.serve_forever()
    finally:
        if watcher is not None:
            watcher.kill(block=False)
        hard_stop.uninstall()


def _options() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m dhaga.web",
                                 description="Serve a WSGI application with dhagas, on one "
                                             "process or several.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("app", help="the WSGI application, as module:attribute")
    ap.add_argument("-b", "--bind", type=parse_bind, default=("127.0.0.1", 8000),
                    help="HOST:PORT or unix:PATH (port 0 picks a free port)")
    ap.add_argument("-p", "--processes", type=int, default=1,
                    help="worker processes (0: one per CPU)")
    ap.add_argument("--reuse-port", action="store_true",
                    help="each worker listens on its own SO_REUSEPORT socket")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], help="the event loop (DHAGA_LOOP)")
    ap.add_argument("--monkey-patch", action="store_true",
                    help="dhaga.monkey.patch_all() before loading the application")
    ap.add_argument("--access-log", action="store_true", help="log every request to stderr")
    ap.add_argument("--backlog", type=int, default=1024)
    ap.add_argument("--max-connections", type=int, default=None,
                    help="connections served at once per process")
    ap.add_argument("--graceful-timeout", type=float, default=30.0,
                    help="seconds requests in flight get to finish on stop")
    ap.add_argument("--header-timeout", type=float, default=10.0,
                    help="seconds a client gets to send a request head")
    ap.add_argument("--keepalive-timeout", type=float, default=75.0,
                    help="seconds an idle keep-alive connection stays open")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds each body read or response send may take")
    ap.add_argument("--body-timeout", type=float, default=120.0,
                    help="seconds a client gets to send a whole request body; 0: no limit")
    ap.add_argument("--max-body-size", type=int, default=1 << 30, help="bytes; 0: no limit")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _options().parse_args(argv)
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    if args.access_log:
        access = logging.getLogger("dhaga.web.access")
        access.setLevel(logging.INFO)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.propagate = False
    processes = args.processes or os.cpu_count() or 1
    reuse_port = args.reuse_port and processes > 1 and not isinstance(args.bind, str)
    listener = _bind(args.bind, args.backlog, reuse_port)
    listeners = [listener] * processes
    try:
        if reuse_port:  # one socket per worker slot, all bound to the port the first one got
            address = listener.getsockname()[:2]
            for i in range(1, processes):
                listeners[i] = _bind(address, args.backlog, True)
        app = None
        if processes == 1:  # import it now: "serving" is printed only for an application
            _patch(args)
            app = load_app(args.app)
        else:  # each worker imports it after forking; check here that the module exists
            _check_module(args.app)
        print(f"dhaga.web: serving {args.app} on {_url(listener)} "
              f"({processes} process{'es' if processes > 1 else ''}, pid {os.getpid()})",
              flush=True)
        if processes == 1:
            _serve(args, listener, False, None, app)
            return 0
        from .supervisor import Supervisor

        master = os.getpid()
        return Supervisor(listeners, lambda sock: _serve(args, sock, True, master),
                          graceful_timeout=args.graceful_timeout).run()
    finally:
        for sock in set(listeners):
            sock.close()


if __name__ == "__main__":
    sys.exit(main())
