"""High-concurrency web serving with dhagas: a WSGI server, a gunicorn worker, Tornado WebSockets.

`WSGIServer` serves any WSGI application, each connection in its own dhaga;
``python -m dhaga.web module:app --processes N`` runs it on several processes;
``gunicorn -k dhaga.web.GunicornWorker`` runs it under gunicorn; `dhaga.web.websocket` gives
Tornado WebSocket handlers a blocking-style ``receive``/``send``.

This package must not know how dhagas are scheduled: it uses only dhaga's public API.
"""

from __future__ import annotations

from typing import Any

from .protocol import Limits, RequestError
from .response import ResponseError
from .server import WSGIServer
from .wsgi import WSGIHandler

__all__ = [
    "WSGIServer",
    "WSGIHandler",
    "GunicornWorker",
    "Limits",
    "RequestError",
    "ResponseError",
    "WebSocket",
    "WebSocketHandler",
    "WebSocketClosed",
    "websocket_connect",
]


def __getattr__(name: str) -> Any:
    # gunicorn is an optional extra, and the WebSocket helpers pull in tornado.websocket:
    # both are imported on first use only.
    if name == "GunicornWorker":
        from .gunicorn_worker import GunicornWorker

        return GunicornWorker
    if name in ("WebSocket", "WebSocketHandler", "WebSocketClosed", "websocket_connect"):
        from . import websocket

        return getattr(websocket, name)
    raise AttributeError(f"module 'dhaga.web' has no attribute {name!r}")
