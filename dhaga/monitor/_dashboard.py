"""``dhaga.monitor.serve()``: an HTTP endpoint in the process, for people and for Prometheus.

How this works
--------------
The endpoint runs on its own OS thread with its own scheduler (a `dhaga.web.WSGIServer`), so
it keeps answering while the dhagas it shows hold their own threads: that is when it is needed.
It only reads: every route answers GET (and HEAD); there is no route, parameter or body that
acts on the process. It binds 127.0.0.1 unless told otherwise.

- ``/``: the live page (`dhaga.monitor._page`), which listens to ``/events``;
- ``/events``: server-sent events, one snapshot per second (at most `MAX_STREAMS` at once);
- ``/dhagas.json``: the same snapshot once: every live dhaga (``dhaga.dump()`` as data), each
  scheduler's counters, recent blocking episodes;
- ``/metrics``: the Prometheus text format, made by ``prometheus_client`` (the ``monitor``
  extra), names prefixed ``dhaga_``, one series per thread.

While it runs, a `Monitor` runs too if none did (loop lag and blocking episodes come from it).

This module reads the monitor's records and the census; it must not park outside its own
thread, nor change any other scheduler.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable, Iterator

from .._core.deadlock import quiet
from .._core.threads import all_schedulers, get_scheduler
from ._dump import dump_data
from ._page import PAGE
from ._stats import scheduler_stats
from ._watchdog import Monitor, _monitors, lag_timeline, recent_episodes

__all__ = ["Dashboard", "serve", "snapshot", "metrics_text"]

MAX_STREAMS = 8  # live pages at once; more get 503
PUSH_EVERY = 1.0  # seconds between two snapshots on /events
MAX_DHAGAS = 5000  # listed per snapshot (the counters still count them all)

_SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'")


def _thread_names() -> dict[int, str]:
    return {t.ident: t.name for t in threading.enumerate() if t.ident is not None}


def snapshot(exclude_thread: int | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON-ready data (``/dhagas.json``).

    Args:
        exclude_thread: leave out that thread's scheduler and dhagas (the dashboard's own).
    """
    names = _thread_names()
    scheds = [
        {"thread": s.thread_id, "thread_name": names.get(s.thread_id, "?"), **scheduler_stats(s)}
        for s in all_schedulers()
        if not s._closed and not s.loop.is_closed() and s.thread_id in names
        and s.thread_id != exclude_thread
    ]
    dhagas = [d for d in dump_data() if d["thread"] != exclude_thread]
    return {
        "time": time.time(),
        "pid": os.getpid(),
        "schedulers": scheds,
        "total_dhagas": len(dhagas),
        "dhagas": dhagas[:MAX_DHAGAS],
        "episodes": [r.as_dict() for r in recent_episodes()[-20:]
                     if r.thread != exclude_thread],
        "lag_history": lag_timeline(120.0, _scheduler_of(exclude_thread)),
    }


def _scheduler_of(thread: int | None) -> Any:
    return next((s for s in all_schedulers() if s.thread_id == thread), None)


def metrics_text(exclude_thread: int | None = None) -> tuple[bytes, str]:
    """The Prometheus exposition of every scheduler's counters: ``(body, content type)``."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    snap_scheds = snapshot(exclude_thread)["schedulers"]

    class _Collector:
        def collect(self) -> Iterator[Any]:
            labels = ["thread", "thread_id"]
            fams = {
                "alive": GaugeMetricFamily("dhaga_alive", "Dhagas spawned and not finished",
                                           labels=labels),
                "runnable": GaugeMetricFamily("dhaga_runnable", "Dhagas ready to run",
                                              labels=labels),
                "parked": GaugeMetricFamily("dhaga_parked", "Dhagas waiting", labels=labels),
                "spawned": CounterMetricFamily("dhaga_spawned", "Dhagas ever spawned",
                                               labels=labels),
                "blocked": CounterMetricFamily(
                    "dhaga_blocked", "Blocking episodes the monitor reported", labels=labels),
            }
            lag = GaugeMetricFamily("dhaga_loop_lag_seconds",
                                    "Seconds a callback waited for the loop (recent probes)",
                                    labels=[*labels, "quantile"])
            for s in snap_scheds:
                lv = [s["thread_name"], str(s["thread"])]
                for key, fam in fams.items():
                    fam.add_metric(lv, s[key])
                for q, key in (("0.5", "loop_lag_p50"), ("0.99", "loop_lag_p99")):
                    if s[key] is not None:
                        lag.add_metric([*lv, q], s[key])
            yield from fams.values()
            yield lag

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST


class Dashboard:
    """A running ``dhaga.monitor.serve()`` endpoint: ``.address``, ``stop()``."""

    def __init__(self, address: Any = ("127.0.0.1", 0), push_every: float = PUSH_EVERY) -> None:
        self.address: Any = None
        self._requested = address
        self._push_every = push_every
        self._streams = 0
        self._server: Any = None
        self._sched: Any = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._monitor = Monitor() if not _monitors else None
        self._thread = quiet(threading.Thread(target=self._run, name="dhaga-dashboard",
                                              daemon=True))
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            if self._monitor is not None:
                self._monitor.stop()
            raise self._error

    def __repr__(self) -> str:
        return f"<dhaga.monitor.Dashboard http://{self.address[0]}:{self.address[1]}/>"

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        from ..web import WSGIServer

        try:
            self._server = WSGIServer(self._app, self._requested)
            self._server.start()
            self.address = self._server.address
            self._sched = get_scheduler()
        except BaseException as e:  # noqa: BLE001 - handed to the caller of serve()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving (live pages are disconnected) and end the endpoint's thread."""
        if self._sched is not None and self._thread.is_alive():
            try:
                self._sched.submit(self._server.stop, 1.0).result(10)
            except RuntimeError:  # its loop is gone already
                pass
            self._thread.join(10)
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None

    # ------------------------------------------------------------------ the WSGI app
    def _app(self, environ: dict, start_response: Callable) -> Any:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed",
                           [("Allow", "GET, HEAD"), ("Content-Type", "text/plain"),
                            *_SECURITY_HEADERS])
            return [b"this endpoint only reads: GET or HEAD\n"]
        me = threading.get_ident()
        if path == "/":
            # The current snapshot goes in the page, so it shows at once; "<" is escaped so
            # that no text in it can end the <script> element.
            initial = json.dumps(snapshot(me)).replace("<", "\\u003c")
            body = PAGE.replace("/*SNAPSHOT*/", initial, 1).encode()
            headers = [("Content-Type", "text/html; charset=utf-8"),
                       ("Content-Security-Policy", _CSP)]
        elif path == "/dhagas.json":
            body = json.dumps(snapshot(me)).encode()
            headers = [("Content-Type", "application/json")]
        elif path == "/metrics":
            try:
                body, ctype = metrics_text(me)
            except ImportError:
                start_response("501 Not Implemented",
                               [("Content-Type", "text/plain"), *_SECURITY_HEADERS])
                return [b"/metrics needs prometheus_client: pip install 'dhaga[monitor]'\n"]
            headers = [("Content-Type", ctype)]
        elif path == "/events":
            if self._streams >= MAX_STREAMS:
                start_response("503 Service Unavailable",
                               [("Content-Type", "text/plain"), ("Retry-After", "5"),
                                *_SECURITY_HEADERS])
                return [b"too many live pages open\n"]
            start_response("200 OK", [("Content-Type", "text/event-stream"),
                                      *_SECURITY_HEADERS])
            return self._events(me) if method == "GET" else [b""]
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain"), *_SECURITY_HEADERS])
            return [b"not found: try /, /dhagas.json or /metrics\n"]
        start_response("200 OK", [*headers, ("Content-Length", str(len(body))),
                                  *_SECURITY_HEADERS])
        return [body if method == "GET" else b""]

    def _events(self, me: int) -> Iterator[bytes]:
        from ..scheduler import sleep

        self._streams += 1
        try:
            yield b"retry: 2000\n\n"
            while True:
                yield b"data: " + json.dumps(snapshot(me)).encode() + b"\n\n"
                sleep(self._push_every)
        finally:
            self._streams -= 1


def serve(address: Any = ("127.0.0.1", 0), *, push_every: float = PUSH_EVERY) -> Dashboard:
    """Serve the live dashboard, ``/metrics`` and ``/dhagas.json`` from this process.

    It runs on its own OS thread, so it answers even while dhagas hold their threads, and it
    starts a `Monitor` if none is running. It serves only reads (GET and HEAD); it binds the
    loopback interface by default: expose it on purpose, never by accident.

    Args:
        address: ``(host, port)``; port 0 picks a free port (see ``.address``).
        push_every: seconds between two updates of a live page.

    Returns:
        the running `Dashboard`: ``.address`` is the bound address; ``stop()`` ends it.
    """
    return Dashboard(address, push_every)
