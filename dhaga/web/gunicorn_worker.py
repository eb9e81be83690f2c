"""`GunicornWorker`: ``gunicorn -k dhaga.web.GunicornWorker app:app`` serves with dhagas.

How this works
--------------
gunicorn's arbiter binds the sockets, forks the worker and calls ``init_process``, which sets
up signals, loads the application and calls ``run``. ``run`` starts one `WSGIServer` per
listening socket (every connection in its own dhaga), then keeps the worker contract from its
main loop, which is top-level code blocking on an event with a one-second timeout:

- heartbeat: ``notify()`` at least once a second, also while a graceful stop is waiting, so
  the arbiter (``--timeout``) never mistakes a busy worker for a stuck one, and a parent change
  (the arbiter died) stops the worker;
- SIGTERM: graceful stop (idle connections closed, requests in flight given
  ``--graceful-timeout`` seconds); SIGINT/SIGQUIT: stop at once; SIGUSR1: reopen log files;
  SIGABRT: exit 1. Signals are taken on the event loop, so they act at once;
- ``--max-requests`` (with its jitter): the request that reaches the limit stops the worker
  gracefully, and the arbiter starts a fresh one;
- ``--worker-connections`` bounds the connections served at once; ``--keepalive``, the
  ``--limit-request-*`` options and TLS (``--certfile``...) are honoured; with
  ``--access-logfile``, each request is logged there (in dhaga.web's format).

Like gunicorn's gevent worker, it monkey-patches the standard library first with the same
``dhaga.monkey.patch_all()`` as ``python -m dhaga.web --monkey-patch`` (threading, subprocess
and the database drivers included; set ``monkey_patch = False`` in a subclass to opt out), so
that ordinary blocking libraries in the application (``requests``, database drivers, pools)
park only their own dhaga. A worker whose dhagas wedge its loop stops sending heartbeats, and
gunicorn's arbiter kills it after ``--timeout`` (on SIGTERM, after ``--graceful-timeout``).

This module must not know HTTP; it adapts gunicorn's configuration and signals to `WSGIServer`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from typing import Any

from gunicorn.workers.base import Worker

from ..group import joinall
from ..scheduler import Dhaga, get_scheduler, spawn
from ..sync import Event
from .server import WSGIServer

__all__ = ["GunicornWorker"]

_UNLIMITED_HEAD = 1 << 20


class GunicornWorker(Worker):
    """A gunicorn worker class serving every connection in its own dhaga."""

    #: Call ``dhaga.monkey.patch_all()`` when the worker starts (as gunicorn's gevent worker).
    monkey_patch = True

    def init_process(self) -> None:
        if self.monkey_patch:
            try:
                from .. import monkey
            except ImportError:  # pragma: no cover - monkey-patching not available
                pass
            else:
                with warnings.catch_warnings():
                    # gunicorn itself imported socketserver, which its worker never uses
                    warnings.filterwarnings("ignore", "socketserver imported",
                                            monkey.MonkeyPatchWarning)
                    monkey.patch_all()
        self._wake = Event()
        self._servers: list[WSGIServer] = []
        self._stoppers: list[Dhaga] = []
        self._exit_code = 0
        super().init_process()

    def _begin_stop(self, grace: float | None = None) -> None:
        """Stop accepting now and start stopping every server (gracefully unless grace=0)."""
        self.alive = False
        if not self._stoppers:
            if grace is None:
                grace = float(self.cfg.graceful_timeout)
            self._stoppers = [spawn(server.stop, grace) for server in self._servers]
        self._wake.set()

    # ------------------------------------------------------------------ signals
    def init_signals(self) -> None:
        super().init_signals()  # gunicorn's defaults, then the loop takes the ones we handle
        loop = get_scheduler().loop
        loop.add_signal_handler(signal.SIGTERM, self._on_term)
        loop.add_signal_handler(signal.SIGINT, self._on_quit)
        loop.add_signal_handler(signal.SIGQUIT, self._on_quit)
        loop.add_signal_handler(signal.SIGUSR1, self.log.reopen_files)
        loop.add_signal_handler(signal.SIGABRT, self._on_abort)
        loop.add_signal_handler(signal.SIGWINCH, lambda: None)

    def _on_term(self) -> None:
        self._begin_stop()

    def _on_quit(self) -> None:
        self.cfg.worker_int(self)
        self._begin_stop(0.0)

    def _on_abort(self) -> None:
        self._exit_code = 1
        self.cfg.worker_abort(self)
        self._begin_stop(0.0)

    # ------------------------------------------------------------------ the contract
    def notify(self) -> None:
        super().notify()
        if self.ppid != os.getppid() and self.alive:
            self.log.info("Parent changed, shutting down: %s", self)
            self._begin_stop()

    def _count_requests(self, app: Any) -> Any:
        """Wrap the application to stop the worker once it answered ``max_requests``."""

        def counted(environ: dict, start_response: Any) -> Any:
            self.nr += 1
            if self.nr >= self.max_requests and self.alive:
                self.log.info("Autorestarting worker after current request.")
                self._begin_stop()  # the listener closes before this dhaga next yields
            return app(environ, start_response)

        return counted

    def _make_servers(self) -> list[WSGIServer]:
        cfg = self.cfg
        ssl_context = None
        if cfg.is_ssl:
            from gunicorn.sock import ssl_context as make_context

            ssl_context = make_context(cfg)
        app = self.wsgi if self.max_requests >= sys.maxsize else self._count_requests(self.wsgi)
        line = cfg.limit_request_line or _UNLIMITED_HEAD
        fields = cfg.limit_request_fields or 32768
        field_size = cfg.limit_request_field_size or _UNLIMITED_HEAD
        head = min(line + 2 + fields * (field_size + 2), 16 * _UNLIMITED_HEAD)
        import gunicorn

        environ = {"SERVER_SOFTWARE": f"dhaga.web gunicorn/{gunicorn.__version__}"}
        servers = []
        for listener in self.sockets:
            servers.append(WSGIServer(
                app, listener.sock, ssl_context=ssl_context,
                max_connections=cfg.worker_connections or None,
                keepalive_timeout=cfg.keepalive if cfg.keepalive > 0 else 0.001,
                max_request_line=line, max_header_size=head, max_headers=fields,
                environ=environ, multiprocess=cfg.workers > 1,
            ))
        return servers

    def _route_access_log(self) -> None:
        if not self.cfg.accesslog:
            return
        access = logging.getLogger("dhaga.web.access")
        access.setLevel(logging.INFO)
        access.propagate = False
        for handler in self.log.access_log.handlers:
            access.addHandler(handler)

    def run(self) -> None:
        self._route_access_log()
        self._servers = self._make_servers()
        for server in self._servers:
            server.start()
        beat = min(1.0, max(self.timeout / 2.0, 0.05)) if self.timeout else 1.0
        try:
            while self.alive:
                self.notify()
                self._wake.wait(beat)
        finally:
            self._begin_stop()
            while not all(s.done() for s in self._stoppers):
                self.notify()
                joinall(self._stoppers, timeout=beat)
            for s in self._stoppers:
                s.result()
        if self._exit_code:
            sys.exit(self._exit_code)
