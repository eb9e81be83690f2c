"""Tiny WSGI applications that the web tests serve from subprocesses."""

from __future__ import annotations

import json
import os

import dhaga


def app(environ, start_response):
    """Answers with the serving process's pid; ``/slow?S`` streams, waiting S seconds inside."""
    path = environ["PATH_INFO"]
    if path == "/slow":
        seconds = float(environ.get("QUERY_STRING") or "1")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _slow(seconds)
    body = f"pid={os.getpid()} path={path}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _slow(seconds):
    yield b"started;"
    dhaga.sleep(seconds)  # parks this request only: the worker keeps serving (and heartbeating)
    yield f"done pid={os.getpid()}".encode()


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


class _Backend:
    in_flight = 0
    max_in_flight = 0
    served = 0


def slow_backend(environ, start_response):
    """Waits ``SLOW_BACKEND_LATENCY`` seconds per request; ``/stats`` tells the peak overlap."""
    if environ["PATH_INFO"] == "/stats":
        body = json.dumps({"max_in_flight": _Backend.max_in_flight,
                           "served": _Backend.served}).encode()
    else:
        _Backend.in_flight += 1
        _Backend.max_in_flight = max(_Backend.max_in_flight, _Backend.in_flight)
        try:
            dhaga.sleep(float(os.environ.get("SLOW_BACKEND_LATENCY", "1")))
        finally:
            _Backend.in_flight -= 1
        _Backend.served += 1
        body = json.dumps({"answer": 42, "path": environ["PATH_INFO"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
