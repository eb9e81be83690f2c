"""One msgpack-rpc connection, either end: calls out, replies in, the peer's requests handled.

How this works
--------------
A `Connection` owns one connected dhaga socket and two dhagas. The *reader* feeds whatever
arrives to the sans-IO `Decoder` and dispatches each message: a Response wakes the caller parked
on its msgid (with the result, or a `RemoteError`); a Request or Notification starts a new dhaga
running the registered handler, so a slow handler never holds up the rest.

Callers never write to the socket themselves: they append encoded messages to a write buffer
and wake the *writer*, which runs after every dhaga already runnable, so the messages of all the
callers of one scheduling batch leave in one ``send`` (one system call for 100 concurrent calls,
where writing directly would make 100). A caller finding the buffer over its limit waits for the
writer to take it, before it registers its call, so a reply can never wake the wrong park. A
server's connection (``pause_reading``) also stops reading while replies are backed up, and
lets the handlers of each batch of requests run before it reads the next: a peer that sends
requests but reads no replies then fills its own socket buffers, not our memory.

Limits (a server's connections have them): at most ``max_in_flight`` handlers run per
connection, and at most the permits of a ``limiter`` semaphore shared by every connection of a
server. Requests read beyond that wait in ``_backlog`` and the reader stops reading until they
have started, so a peer pipelining calls fills its own socket buffers; only while calls of ours
wait for the peer's replies does it read on (up to ``max_in_flight`` waiting requests), so a
handler calling back its client cannot deadlock on its own limit. When the connection ends,
the request handlers still running are killed (``cancel_on_close``): nobody can get their
replies. An ``idle_timeout`` closes a connection that received nothing for that long while it
had no handler running and no call waiting.

Pending calls are a dict msgid -> the caller's parking ticket (`dhaga._core.parking`). The caller removes its entry in a ``finally``,
so a call that timed out or was killed leaves nothing behind, and its late reply finds no entry
and is dropped. When the connection ends (EOF, a socket error, bytes that break the protocol, or
`close`), every pending caller is woken at once with its own `ConnectionLost`.

This module must not know how the socket was obtained (connect, accept, TLS), nor about
reconnecting or listening.
"""

from __future__ import annotations

import contextvars
import logging
import socket as _socket
from collections import deque
from time import monotonic
from typing import Any, Callable

from .._core.parking import park, ticket, wake
from ..codecs.msgpack_rpc import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_OBJECTS,
    MAX_MSGID,
    Decoder,
    Notification,
    Request,
    Response,
    encode_notification,
    encode_request,
    encode_response,
)
from ..errors import ConnectionLost, ProtocolError, Timeout
from ..scheduler import Dhaga, current, get_scheduler, sleep
from ..semaphores import Semaphore
from ._methods import Methods, format_error
from .errors import RemoteError

__all__ = ["Connection", "current_connection", "DEFAULT_WRITE_BUFFER_LIMIT"]

log = logging.getLogger("dhaga.rpc")

_EXPIRED = object()  # what `park` returns here when its timeout expired

#: Bytes queued for sending above which callers wait for the writer (backpressure).
DEFAULT_WRITE_BUFFER_LIMIT = 4 * 1024 * 1024

_RECV_SIZE = 32 * 1024  # also the most the reader decodes before other peers get a turn
# sleep(0) runs the other runnable dhagas but may not let the loop poll (a batch allows 512
# such yields); any positive sleep takes one turn of the loop, so other peers are read too.
_LOOP_TURN = 1e-6
_GONE_CHECK = 0.5  # seconds between checks that a peer we are not reading is still there
_TCP_INFO = getattr(_socket, "TCP_INFO", None)  # Linux
_TCP_GONE = frozenset((7, 8, 9))  # TCP_CLOSE, TCP_CLOSE_WAIT, TCP_LAST_ACK: the peer hung up
_current: contextvars.ContextVar[Connection] = contextvars.ContextVar("dhaga_rpc_connection")


def _peer_gone(sock: Any) -> bool:
    """True when a TCP peer has closed or reset the connection (False when unknowable)."""
    if _TCP_INFO is None or sock.family not in (_socket.AF_INET, _socket.AF_INET6):
        return False
    try:
        return sock.getsockopt(_socket.IPPROTO_TCP, _TCP_INFO, 1)[0] in _TCP_GONE
    except OSError:
        return True


def current_connection() -> Connection:
    """The connection whose request or notification the calling handler is serving.

    A handler uses it to call back the peer that called it (Neovim plugins do this).

    Raises:
        LookupError: the caller is not running an RPC handler.
    """
    return _current.get()


class Connection:
    """A msgpack-rpc endpoint over one connected socket: it calls the peer and serves it.

    Made by `Client` (which reconnects) and by `Server` for each accepted connection; a handler
    reaches its own with `current_connection()`. Belongs to the OS thread that made it.

    Args:
        sock: a connected ``dhaga.net`` socket; the connection owns and closes it.
        methods: the handlers for the peer's requests and notifications.
        peer: the peer's address, for log messages.
        max_message_size: largest message accepted from the peer, in bytes.
        write_buffer_limit: queued bytes above which callers wait for the socket.
        pause_reading: stop reading while the write buffer is over its limit (a server's
            connections do, so a peer that sends requests but reads no replies cannot make
            the server queue replies without bound).
        on_close: called with the connection once, when it has ended.
        max_objects: most values one message from the peer may hold.
        max_in_flight: most handlers of this peer's requests and notifications running at
            once; None for no limit. Past it the connection stops reading.
        limiter: a semaphore shared with other connections (a server's), one permit per
            running handler; None for none.
        cancel_on_close: kill the request handlers still running when the connection ends.
        idle_timeout: seconds without receiving anything, while no handler runs and no call
            waits, after which the connection is closed; None (the default) never. It also
            bounds how long the peer may leave a reply unread.
    """

    def __init__(
        self,
        sock: Any,
        methods: Methods,
        *,
        peer: Any = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        write_buffer_limit: int = DEFAULT_WRITE_BUFFER_LIMIT,
        pause_reading: bool = False,
        on_close: Callable[[Connection], Any] | None = None,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        max_in_flight: int | None = None,
        limiter: Semaphore | None = None,
        cancel_on_close: bool = False,
        idle_timeout: float | None = None,
    ) -> None:
        if max_in_flight is not None and (type(max_in_flight) is not int or max_in_flight < 1):
            raise ValueError(f"max_in_flight must be a positive int or None, got {max_in_flight!r}")
        self._sched = get_scheduler()
        self._sock = sock
        self._methods = methods
        self.peer = peer
        self._decoder = Decoder(max_message_size, max_objects=max_objects)
        self._max_in_flight = max_in_flight
        self._running = 0  # handlers started and not finished
        self._slot_freed: Semaphore | None = None  # only while the reader waits for a slot
        # Requests read on while calls of ours wait for replies (at most): see _start_backlog.
        self._max_backlog = max(1024, 2 * (max_in_flight or 0))
        self._limiter = limiter
        # Requests read and not started yet; made when needed (an idle connection has none).
        self._backlog: deque[Request | Notification] | None = None
        self._calls: set[Dhaga] = set()  # the request handlers running
        self._cancel = cancel_on_close
        self._idle_timeout = idle_timeout
        self._wlimit = write_buffer_limit
        self._pause_reading = pause_reading
        self._on_close = on_close
        self._pending: dict[int, tuple[Any, int]] = {}
        self._msgid = 0
        self._tasks: set[Dhaga] = set()
        self._wbuf: list[bytes] = []
        self._wbytes = 0
        self._drain_waiters: list[Any] = []  # parking tickets
        self._writer_idle = True  # no writer dhaga: one is started when there is data
        self._writing = False
        self._closed = False
        self.close_reason: BaseException | None = None
        self._reader: Dhaga | None = None
        self._writer: Dhaga | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pending={len(self._pending)}"
        return f"<Connection peer={self.peer!r} {state}>"

    @property
    def closed(self) -> bool:
        """True once the connection has ended; it never reopens."""
        return self._closed

    @property
    def pending(self) -> int:
        """Calls sent on this connection still waiting for their reply."""
        return len(self._pending)

    # ------------------------------------------------------------------ calling the peer
    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``method(*args)`` on the peer and wait for its reply.

        Args:
            method: the peer's method name.
            *args: the parameters; msgpack's plain types (and ExtHandle) only.
            timeout: seconds to wait for the reply; None waits forever.

        Returns:
            The peer's result.

        Raises:
            RemoteError: the peer answered with an error.
            Timeout: no reply within ``timeout``; a late reply is dropped.
            ConnectionLost: the connection ended before the reply came.
            TypeError: a parameter has no msgpack form.
        """
        sched = get_scheduler()
        if sched is not self._sched:
            raise RuntimeError("an rpc connection belongs to the OS thread that opened it")
        wait = timeout
        if self._wbytes > self._wlimit:
            start = monotonic()
            self._wait_drained(timeout)
            if timeout is not None:
                wait = max(0.0, timeout - (monotonic() - start))
        if self._closed:
            raise self._lost()
        pending = self._pending
        msgid = (self._msgid + 1) & MAX_MSGID
        while msgid in pending:  # only after 2**32 calls, with one still pending
            msgid = (msgid + 1) & MAX_MSGID
        self._msgid = msgid
        data = encode_request(msgid, method, args)
        mine = pending[msgid] = ticket()
        try:
            self._queue(data)
            value = park(mine, wait, _EXPIRED)
        finally:
            pending.pop(msgid, None)
        if value is _EXPIRED:
            raise Timeout(f"no reply to {method!r} within {timeout}s", timeout)
        return value

    def notify(self, method: str, *args: Any) -> None:
        """Send a notification: ``method(*args)`` on the peer, no reply expected.

        Returns once the message is queued; `close` still sends it.

        Raises:
            ConnectionLost: the connection has ended.
            TypeError: a parameter has no msgpack form.
        """
        sched = get_scheduler()
        if sched is not self._sched:
            raise RuntimeError("an rpc connection belongs to the OS thread that opened it")
        data = encode_notification(method, args)
        if self._wbytes > self._wlimit:
            self._wait_drained(None)
        if self._closed:
            raise self._lost()
        self._queue(data)

    def close(self) -> None:
        """End the connection: send what is queued if the socket takes it now, then close.

        Calls in flight fail with `ConnectionLost`. Never blocks; closing twice is harmless.
        """
        if self._closed:
            return
        if self._wbuf and not self._writing:
            sock = self._sock
            try:
                sock.setblocking(False)
                sock.send(b"".join(self._wbuf))
            except OSError:
                pass
        self._shutdown(None)

    # ------------------------------------------------------------------ the reader
    def start(self) -> Dhaga:
        """Start the reader in a new dhaga; returns it."""
        self._reader = self._sched.spawn(self.serve)
        self._reader.name = f"rpc-reader-{self.peer}"
        return self._reader

    def serve(self) -> None:
        """Read and dispatch messages in the calling dhaga until the connection ends."""
        if self._reader is None:
            self._reader = current()
        _current.set(self)  # the handler dhagas spawned from here inherit it
        pause = self._pause_reading
        recv = self._sock.recv
        feed = self._decoder.feed
        pending = self._pending
        idle = self._idle_timeout
        if idle is not None:
            self._sock.settimeout(idle)
        reason: BaseException | None = None
        try:
            while True:
                if pause and (self._wbytes > self._wlimit or self._drain_waiters):
                    self._wait_drained(None, idle=True)  # the peer reads no replies
                if self._backlog:
                    self._start_backlog(block=True)
                try:
                    data = recv(_RECV_SIZE)
                except TimeoutError:
                    if idle is None or self._tasks or pending or self._wbuf or self._backlog:
                        continue  # busy, not idle: keep waiting
                    log.debug("closing rpc connection with %s: idle for %ss", self.peer, idle)
                    reason = ConnectionLost(f"closed the connection with {self.peer}: "
                                            f"nothing received for {idle}s (idle_timeout)")
                    return
                if not data:
                    if self._decoder.buffered:
                        reason = ConnectionLost(
                            f"peer {self.peer} closed the connection in the middle of a message")
                    else:
                        reason = ConnectionLost(f"peer {self.peer} closed the connection")
                    return
                requests = False
                backlog = self._backlog
                for msg in feed(data):
                    kind = type(msg)
                    if kind is Response:
                        entry = pending.pop(msg.msgid, None)
                        if entry is None:
                            log.debug("dropped a reply for msgid %d from %s: no call waits "
                                      "for it (timed out or killed)", msg.msgid, self.peer)
                        elif msg.error is None:
                            wake(entry, msg.result)
                        else:
                            wake(entry, None, RemoteError(msg.error))
                    else:
                        if backlog is None:
                            backlog = self._backlog = deque()
                        backlog.append(msg)
                        requests = True
                if backlog:
                    self._start_backlog(block=False)
                if len(data) == _RECV_SIZE:  # more is waiting: let the loop poll, others run
                    sleep(_LOOP_TURN)
                elif pause and requests:
                    sleep(0)  # let those handlers run (and queue replies) before reading more
        except ProtocolError as exc:
            if not self._closed:  # the text, not exc: a kept record would keep its frames
                log.warning("closing rpc connection with %s: %s", self.peer, str(exc))
            reason = exc.with_traceback(None)  # kept in close_reason: no frames, no buffers
        except OSError as exc:
            reason = exc.with_traceback(None)
        finally:
            self._shutdown(reason)

    def _start_backlog(self, block: bool) -> None:
        """Start the handlers of the requests read and not started yet, oldest first.

        With ``block``, wait for slots, unless calls of ours wait for the peer's replies and
        fewer than ``max_in_flight`` requests wait: then the reader must read on.
        """
        backlog = self._backlog
        most, limiter = self._max_in_flight, self._limiter
        while backlog:
            wait = block and (not self._pending or len(backlog) >= self._max_backlog)
            if most is not None and self._running >= most:
                if not wait:
                    return
                # Wait for a handler to finish (it releases this), then look again.
                freed = self._slot_freed = Semaphore(0)
                try:
                    if not self._acquire(freed, True):
                        return
                finally:
                    self._slot_freed = None
                continue
            if limiter is not None and not self._acquire(limiter, wait):
                return
            if self._closed or backlog is not self._backlog or not backlog:  # ended meanwhile
                if limiter is not None:
                    limiter.release()
                return
            msg = backlog.popleft()
            self._running += 1
            if type(msg) is Request:
                d = self._sched.spawn(self._run_request, msg)
                self._calls.add(d)
            else:
                d = self._sched.spawn(self._run_notification, msg)
            self._tasks.add(d)
            d.add_done_callback(self._handler_done)
        if backlog is self._backlog:
            self._backlog = None  # all started: an idle connection keeps no deque

    def _acquire(self, sem: Semaphore, wait: bool) -> bool:
        """Take a permit of ``sem``; while waiting for one, notice a peer that has hung up.

        The reader does not read while it waits, so it would not see the peer's EOF behind
        the requests still unread; TCP's own state (CLOSE_WAIT once the peer's FIN came) does.

        Raises:
            ConnectionLost: the peer hung up meanwhile.
        """
        if not wait:
            return sem.acquire(False)
        while not sem.acquire(timeout=_GONE_CHECK):
            if _peer_gone(self._sock):
                raise ConnectionLost(f"peer {self.peer} closed the connection")
            if self._pending and len(self._backlog or ()) < self._max_backlog:
                return False  # a handler called the peer meanwhile: read its reply
        return True

    def _handler_done(self, d: Dhaga) -> None:
        self._tasks.discard(d)
        self._calls.discard(d)
        self._running -= 1
        if self._slot_freed is not None:
            self._slot_freed.release()
        if self._limiter is not None:
            self._limiter.release()
        if self._backlog and not self._closed:  # the reader may be in recv (see _acquire)
            self._start_backlog(block=False)

    def _run_request(self, req: Request) -> None:
        _current.set(self)  # started by the reader, or by a finished handler's callback
        fn = self._methods.get(req.method)
        result = error = None
        if fn is None:
            error = ["NoSuchMethod", f"unknown method {req.method!r}"]
        else:
            try:
                result = fn(*req.params)
            except RemoteError as exc:  # passed on as the peer sent it (chained servers)
                error = exc.error
            except Exception as exc:  # noqa: BLE001 - reported to the caller
                log.debug("handler %r raised", req.method, exc_info=True)
                try:
                    error = self._methods.format_error(exc)
                except Exception:  # noqa: BLE001
                    log.exception("format_error failed on %r", exc)
                    error = format_error(exc)
        try:
            data = encode_response(req.msgid, error, result)
        except (TypeError, ValueError, OverflowError) as exc:
            log.warning("cannot encode the reply of %r: %s", req.method, exc)
            data = encode_response(
                req.msgid, [type(exc).__name__, f"cannot encode the reply: {exc}"], None)
        if self._wbytes > self._wlimit and not self._closed:
            self._wait_drained(None)
        if self._closed:
            log.debug("reply to %r dropped: connection with %s closed", req.method, self.peer)
            return
        self._queue(data)

    def _run_notification(self, note: Notification) -> None:
        _current.set(self)
        fn = self._methods.get(note.method)
        if fn is None:
            log.warning("no handler for notification %r from %s", note.method, self.peer)
            return
        try:
            fn(*note.params)
        except Exception:  # noqa: BLE001 - nobody to report it to but the log
            log.exception("handler of notification %r from %s failed", note.method, self.peer)

    # ------------------------------------------------------------------ the writer
    def _queue(self, data: bytes) -> None:
        self._wbuf.append(data)
        self._wbytes += len(data)
        if self._writer_idle:  # an idle connection keeps no writer dhaga (nor its stack)
            self._writer_idle = False
            self._writer = self._sched.spawn(self._write_loop)

    def _write_loop(self) -> None:
        sock = self._sock
        buf = self._wbuf
        try:
            while True:
                if not buf:
                    self._writer_idle = True  # the next _queue starts another writer
                    return
                data = buf[0] if len(buf) == 1 else b"".join(buf)
                buf.clear()
                self._wbytes = 0
                if self._drain_waiters:
                    waiters, self._drain_waiters = self._drain_waiters, []
                    for t in waiters:
                        wake(t)
                self._writing = True
                sock.sendall(data)
                self._writing = False
        except OSError as exc:
            self._writing = False
            self._shutdown(exc)

    def _wait_drained(self, timeout: float | None, idle: bool = False) -> None:
        """Wait until the writer has taken the buffer (or the connection ends).

        With ``idle``, also until no one else waits for it (the reader uses this).
        """
        while not self._closed and (
            self._wbytes > self._wlimit or (idle and self._drain_waiters)
        ):
            mine = ticket()
            self._drain_waiters.append(mine)
            try:
                if park(mine, timeout, _EXPIRED) is _EXPIRED:
                    raise Timeout(f"the connection to {self.peer} took no data for {timeout}s",
                                  timeout)
            finally:
                if mine in self._drain_waiters:
                    self._drain_waiters.remove(mine)

    # ------------------------------------------------------------------ ending
    def _lost(self) -> ConnectionLost:
        reason = self.close_reason
        text = f"connection with {self.peer} closed"
        if reason is not None and not isinstance(reason, ConnectionLost):
            text += f": {type(reason).__name__}: {reason}"
        elif reason is not None:
            text = str(reason)
        exc = ConnectionLost(text)
        exc.__cause__ = reason
        return exc

    def _shutdown(self, reason: BaseException | None) -> None:
        """End the connection once: fail pending calls, stop both dhagas, close the socket."""
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        pending, self._pending = self._pending, {}
        for t in pending.values():
            wake(t, None, self._lost())
        waiters, self._drain_waiters = self._drain_waiters, []
        for t in waiters:
            wake(t)
        self._wbuf.clear()
        self._wbytes = 0
        self._backlog = None
        me = current()
        for d in (self._writer, self._reader):
            if d is not None and d is not me and not d.done():
                d.kill(block=False)
        if self._cancel:  # nobody can get their replies now
            for d in list(self._calls):
                if d is not me:
                    d.kill(block=False)
        self._sock.close()
        if self._on_close is not None:
            try:
                self._on_close(self)
            except Exception:  # noqa: BLE001
                log.exception("on_close callback of %r failed", self)

    def kill_handlers(self) -> None:
        """Kill the handler dhagas still running for this connection's peer."""
        me = current()
        for d in list(self._tasks):
            if d is not me:
                d.kill(block=False)
