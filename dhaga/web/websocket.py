"""Blocking-style WebSockets on Tornado: ``ws.receive()``, ``ws.send()`` and ``ws.close()``.

How this works
--------------
Tornado runs the WebSocket protocol on the loop. `WebSocketHandler` starts ``handle(ws)`` in a
dhaga when a connection opens; Tornado's ``on_message`` puts each message on a small Tornado
queue and returns the queue's ``put`` future, so Tornado reads no further frame while the queue
is full (back-pressure instead of unbounded buffering). `WebSocket.receive` blocks the dhaga on
the queue's next item; a ``None`` item marks the end of the connection. On the client side,
`websocket_connect` wraps Tornado's client connection, whose ``read_message`` is the same kind
of queue. A receive that times out (or is killed) keeps its pending future for the next
receive, so no message is lost. `WebSocket.send` waits until Tornado has written the message,
which gives sending the same back-pressure.

This module must not know the WebSocket wire protocol (Tornado's job), nor WSGI.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import tornado.iostream
import tornado.queues
import tornado.websocket

from ..bridge import wait
from ..errors import ConnectionLost
from ..scheduler import spawn

__all__ = ["WebSocket", "WebSocketClosed", "WebSocketHandler", "websocket_connect"]

log = logging.getLogger("dhaga.web")

Message = Any  # str | bytes


class WebSocketClosed(ConnectionLost):
    """The WebSocket is closed: by the peer, or by us.

    Attributes:
        code: the close code the peer sent, when known.
        reason: the close reason the peer sent, when known.
    """

    def __init__(self, message: str = "the WebSocket is closed", code: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class WebSocket:
    """One WebSocket connection, blocking style: use it from a dhaga (or top-level code).

    Not created directly: `WebSocketHandler.handle` receives one, `websocket_connect` returns
    one.

    Args:
        conn: the Tornado connection (handler or client connection) this wraps.
        next_message: returns an awaitable of the next message (None at the end).
    """

    def __init__(self, conn: Any, next_message: Callable[[], Any]) -> None:
        self._conn = conn
        self._next = next_message
        self._pending: Any = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<dhaga.web.WebSocket {'closed' if self._closed else 'open'}>"

    @property
    def closed(self) -> bool:
        """True once the end of the connection has been received, or `close` was called."""
        return self._closed

    @property
    def close_code(self) -> int | None:
        """The close code the peer sent (1000: normal), or None while open or if it sent none."""
        return getattr(self._conn, "close_code", None)

    @property
    def close_reason(self) -> str | None:
        """The close reason the peer sent, or None."""
        return getattr(self._conn, "close_reason", None)

    def _closed_error(self) -> WebSocketClosed:
        return WebSocketClosed(code=self.close_code, reason=self.close_reason)

    def receive(self, timeout: float | None = None) -> Message:
        """Wait for the next message (``str`` for text, ``bytes`` for binary).

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            the message.

        Raises:
            WebSocketClosed: the connection is closed (and every message before it was read).
            Timeout: ``timeout`` seconds passed first; the next receive gets the message.
        """
        if self._closed and self._pending is None:
            raise self._closed_error()
        fut = self._pending if self._pending is not None else self._next()
        self._pending = None
        try:
            message = wait(fut, timeout)
        except BaseException:
            if not fut.done():
                self._pending = fut  # still ours: the next receive takes what it brings
            raise
        if message is None:
            self._release()
            raise self._closed_error()
        return message

    def send(self, message: Message | dict, binary: bool = False,
             timeout: float | None = None) -> None:
        """Send a message (a dict is sent as JSON) and wait until it has been written.

        Args:
            message: ``str`` (a text message), ``bytes`` or a dict (sent as JSON text).
            binary: send a binary message; otherwise a text message (bytes included, as
                Tornado does).
            timeout: seconds to wait at most for the write; None waits forever.

        Raises:
            WebSocketClosed: the connection is closed.
            Timeout: the message was not written within ``timeout`` seconds.
        """
        try:
            fut = self._conn.write_message(message, binary=binary)
            wait(fut, timeout)
        except (tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError):
            self._release()
            raise self._closed_error() from None

    def _release(self) -> None:
        """The peer is gone: mark closed and let Tornado release the connection."""
        self._closed = True
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - already torn down
            pass

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start the closing handshake (does not block); later receives raise WebSocketClosed.

        Args:
            code: the close code to send (None: none).
            reason: the close reason to send.
        """
        self._closed = True
        self._conn.close(code, reason)

    def __iter__(self) -> Iterator[Message]:
        """The messages, until the connection closes."""
        while True:
            try:
                yield self.receive()
            except WebSocketClosed:
                return

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._closed:
            self.close()


class WebSocketHandler(tornado.websocket.WebSocketHandler):
    """A Tornado WebSocket handler whose `handle` method runs in a dhaga, in blocking style.

    Example::

        class Echo(dhaga.web.WebSocketHandler):
            def handle(self, ws):
                for message in ws:           # blocks this dhaga only
                    ws.send(message.upper())

    When `handle` returns, the connection is closed (with code 1011 if it raised).
    """

    #: Messages received but not yet read before Tornado stops reading from the client.
    max_queued_messages = 64

    ws: WebSocket

    def open(self, *args: str, **kwargs: str) -> None:
        queue: tornado.queues.Queue = tornado.queues.Queue(self.max_queued_messages)
        self._ws_queue = queue
        self.ws = WebSocket(self, queue.get)
        self.ws_dhaga = spawn(self._run, args, kwargs)

    def on_message(self, message: Message) -> Any:
        return self._ws_queue.put(message)  # a pending future while the queue is full

    def on_close(self) -> None:
        queue = getattr(self, "_ws_queue", None)
        if queue is not None:
            queue.put(None)  # after the messages already queued

    def _run(self, args: tuple, kwargs: dict) -> None:
        code: int | None = None
        try:
            self.handle(self.ws, *args, **kwargs)
        except WebSocketClosed:
            pass
        except Exception:
            log.exception("%s.handle failed", type(self).__name__)
            code = 1011
        finally:
            if self.ws_connection is not None:
                self.close(code)

    def handle(self, ws: WebSocket, *args: str, **kwargs: str) -> None:
        """Serve one connection; override it. Runs in its own dhaga, so it may block.

        Args:
            ws: the connection: `WebSocket.receive`, `WebSocket.send`, `WebSocket.close`.
            args, kwargs: the groups matched in the URL, as for Tornado's ``open``.
        """
        raise NotImplementedError


def websocket_connect(url: str, timeout: float | None = None, **kwargs: Any) -> WebSocket:
    """Open a WebSocket client connection, blocking style.

    Args:
        url: ``ws://`` or ``wss://`` URL (or a `tornado.httpclient.HTTPRequest`).
        timeout: seconds to wait for the connection.
        kwargs: passed to `tornado.websocket.websocket_connect` (``subprotocols``...).

    Returns:
        the open `WebSocket`.

    Raises:
        Timeout: not connected within ``timeout`` seconds.
        OSError, tornado.httpclient.HTTPClientError: the connection or handshake failed.
    """
    fut = tornado.websocket.websocket_connect(url, **kwargs)
    try:
        conn = wait(fut, timeout)
    except BaseException:
        # a connection made after we gave up must not be left open
        fut.add_done_callback(lambda f: f.exception() is None and f.result().close())
        raise
    return WebSocket(conn, conn.read_message)
