"""The `Socket`: ZeroMQ-style messaging sockets for dhagas, one routing strategy per type.

How this works
--------------
A socket is a routing strategy (`dhaga.mq.routing`, `dhaga.mq.pubsub`) over pipes, plus the
waiting. ``send`` and ``recv`` first ask the strategy, which never blocks; only when it says
"would block" does the caller park, on a FIFO of tickets. A strategy signals the socket when a
pipe turns readable or has room again; a signal wakes one parked dhaga (and every `Poller`
watching), which asks again. A dhaga woken that leaves without using the signal (timeout,
kill) passes it on, so a message never waits while a dhaga sleeps.

Messages are atomic: ``send(..., more=True)`` collects frames and the last one sends the whole
message. Endpoints are handed to the transports (``inproc://`` or a ZMTP session over tcp/ipc);
they call back `_new_pipe`, `_attach`, `_terminated`.

This module must not know the wire protocol, how a transport moves bytes, or how any socket
type routes.
"""

from __future__ import annotations

import logging
from collections import deque
from time import monotonic
from typing import Any, Iterable

from .._core.parking import park, ticket, wake
from ..errors import BlockingError, Timeout
from ..scheduler import get_scheduler
from .errors import NotSupported, SocketClosed
from .options import OPTIONS, Option
from .pipe import Channel, Message, Pipe
from .pubsub import Pub, Sub, XPub, XSub
from .routing import STRATEGIES, Closed, Strategy
from .security import check_security

__all__ = ["Socket", "KINDS"]

log = logging.getLogger("dhaga.mq")

_STRATEGIES: dict[str, type[Strategy]] = {**STRATEGIES, "PUB": Pub, "XPUB": XPub, "SUB": Sub,
                                          "XSUB": XSub}
#: The socket types, spelled as on the wire.
KINDS = frozenset(_STRATEGIES)


def _frame(data: Any) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        raise TypeError("frames are bytes; encode str first (or use send_string)")
    return bytes(memoryview(data))


class Socket:
    """A messaging socket: ``Socket(dhaga.mq.PUSH, sndhwm=100)``.

    Every option is a keyword argument and an attribute, in libzmq's units (milliseconds,
    messages): see `OPTIONS`. A socket belongs to the OS thread that made it; any number of
    its dhagas may use it. Blocking calls accept ``timeout=`` in seconds; None means the
    ``rcvtimeo``/``sndtimeo`` option, which by default waits forever.

    Args:
        kind: one of `dhaga.mq.REQ`, `REP`, `DEALER`, `ROUTER`, `PUB`, `SUB`, `XPUB`, `XSUB`,
            `PUSH`, `PULL`, `PAIR`.
        **options: initial option values.

    Raises:
        ValueError: unknown kind or bad option value.
        TypeError: unknown option name.
    """

    sndhwm: Option[int] = Option(*OPTIONS["sndhwm"])
    rcvhwm: Option[int] = Option(*OPTIONS["rcvhwm"])
    linger: Option[int] = Option(*OPTIONS["linger"])
    routing_id: Option[bytes] = Option(*OPTIONS["routing_id"])
    rcvtimeo: Option[int] = Option(*OPTIONS["rcvtimeo"])
    sndtimeo: Option[int] = Option(*OPTIONS["sndtimeo"])
    router_mandatory: Option[bool] = Option(*OPTIONS["router_mandatory"])
    reconnect_ivl: Option[int] = Option(*OPTIONS["reconnect_ivl"])
    reconnect_ivl_max: Option[int] = Option(*OPTIONS["reconnect_ivl_max"])
    heartbeat_ivl: Option[int] = Option(*OPTIONS["heartbeat_ivl"])
    heartbeat_ttl: Option[int] = Option(*OPTIONS["heartbeat_ttl"])
    heartbeat_timeout: Option[int] = Option(*OPTIONS["heartbeat_timeout"])
    maxmsgsize: Option[int] = Option(*OPTIONS["maxmsgsize"])
    handshake_ivl: Option[int] = Option(*OPTIONS["handshake_ivl"])
    xpub_verbose: Option[bool] = Option(*OPTIONS["xpub_verbose"])
    zmtp_minor: Option[int] = Option(*OPTIONS["zmtp_minor"])
    plain_server: Option[bool] = Option(*OPTIONS["plain_server"])
    plain_username: Option[bytes] = Option(*OPTIONS["plain_username"])
    plain_password: Option[bytes] = Option(*OPTIONS["plain_password"])
    curve_server: Option[bool] = Option(*OPTIONS["curve_server"])
    curve_publickey: Option[bytes] = Option(*OPTIONS["curve_publickey"])
    curve_secretkey: Option[bytes] = Option(*OPTIONS["curve_secretkey"])
    curve_serverkey: Option[bytes] = Option(*OPTIONS["curve_serverkey"])
    zap_domain: Option[str] = Option(*OPTIONS["zap_domain"])

    def __init__(self, kind: str, **options: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown socket type {kind!r}; expected one of {sorted(KINDS)}")
        self._kind = kind
        self._sched = get_scheduler()
        for name, (default, _, _) in OPTIONS.items():
            object.__setattr__(self, "_" + name, default)
        for name, value in options.items():
            if name == "identity":
                name = "routing_id"
            if name not in OPTIONS:
                raise TypeError(f"unknown socket option {name!r}")
            setattr(self, name, value)
        self._strategy: Strategy = _STRATEGIES[kind](self)
        self._take = self._strategy.recv  # the hot paths skip one attribute lookup
        self._put = self._strategy.send
        self._rwait: deque[tuple[Any, int]] = deque()
        self._swait: deque[tuple[Any, int]] = deque()
        self._flushwait: list[tuple[Any, int]] = []
        self._pollers: list[tuple[Any, int]] = []
        self._sparts: list[bytes] = []
        self._rparts: list[bytes] = []
        self._endpoints: dict[str, list[Any]] = {}
        self._sessions: set[Any] = set()
        self._closed = False
        self.last_endpoint = ""

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._strategy.pipes)} peers"
        return f"<dhaga.mq.Socket {self._kind} {state}>"

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ attributes
    @property
    def kind(self) -> str:
        """The socket type, e.g. ``"PUSH"``."""
        return self._kind

    type = kind

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    @property
    def rcvmore(self) -> bool:
        """After `recv`: whether more frames of the same message follow."""
        return bool(self._rparts)

    @property
    def identity(self) -> bytes:
        """Alias of ``routing_id``, pyzmq's older name."""
        return self.routing_id

    @identity.setter
    def identity(self, value: bytes) -> None:
        self.routing_id = value

    # ------------------------------------------------------------------ endpoints
    def bind(self, endpoint: str) -> str:
        """Accept connections at ``endpoint``: ``tcp://host:port``, ``ipc://path``,
        ``inproc://name``. Port ``*`` or 0 (and ``ipc://*``) pick a free one.

        Args:
            endpoint: where to listen.

        Returns:
            the actual endpoint, e.g. ``tcp://127.0.0.1:40123``.

        Raises:
            OSError: the address is in use or cannot be bound.
            ValueError: the endpoint is malformed or its transport unknown, or a CURVE
                socket lacks its key pair (ImportError: CURVE without PyNaCl).
        """
        self._check_open()
        check_security(self)
        handle = _transport(endpoint).bind(self, endpoint)
        self._endpoints.setdefault(handle.endpoint, []).append(handle)
        self.last_endpoint = handle.endpoint
        return handle.endpoint  # type: ignore[no-any-return]

    def connect(self, endpoint: str) -> None:
        """Connect to ``endpoint``, now and again whenever the connection drops.

        Messages for this peer queue (up to ``sndhwm``) before the connection is up.

        Args:
            endpoint: ``tcp://host:port``, ``ipc://path`` or ``inproc://name``.

        Raises:
            ValueError: the endpoint is malformed or its transport unknown, or a CURVE
                socket lacks its key pair (ImportError: CURVE without PyNaCl).
        """
        self._check_open()
        check_security(self)
        handle = _transport(endpoint).connect(self, endpoint)
        self._endpoints.setdefault(endpoint, []).append(handle)
        self.last_endpoint = endpoint

    def unbind(self, endpoint: str) -> None:
        """Stop accepting at ``endpoint`` (as returned by `bind`) and drop its connections.

        Args:
            endpoint: an endpoint `bind` returned.
        """
        self._drop_endpoint(endpoint)

    def disconnect(self, endpoint: str) -> None:
        """Stop connecting to ``endpoint`` and drop the connection to it.

        Args:
            endpoint: an endpoint given to `connect`.
        """
        self._drop_endpoint(endpoint)

    def _drop_endpoint(self, endpoint: str) -> None:
        handles = self._endpoints.pop(endpoint, None)
        if not handles:
            raise ValueError(f"{endpoint!r} is not bound or connected on this socket")
        for handle in handles:
            handle.close()

    # ------------------------------------------------------------------ sending
    def send(self, data: Any, more: bool = False, timeout: float | None = None) -> None:
        """Send one frame; with ``more`` it is kept until the message's last frame is sent.

        Args:
            data: the frame (bytes-like; a str is refused, use `send_string`).
            more: more frames of this message follow.
            timeout: seconds to wait at most; None means the ``sndtimeo`` option.

        Raises:
            Timeout: the message could not be queued in time (every peer full, or none).
            BadState: REQ/REP order broken. NotSupported: this type cannot send.
            SocketClosed: the socket is closed.
        """
        if more:
            self._sparts.append(_frame(data))
            return
        if self._sparts:
            msg = self._sparts
            self._sparts = []
            msg.append(_frame(data))
        else:
            msg = [data if type(data) is bytes else _frame(data)]
        if not self._put(msg):
            self._send_wait(msg, timeout)

    def send_multipart(self, frames: Iterable[Any], timeout: float | None = None) -> None:
        """Send a whole message (at least one frame; frames may be empty).

        Args:
            frames: the message's frames, bytes-like.
            timeout: seconds to wait at most; None means the ``sndtimeo`` option.

        Raises:
            as `send`; ValueError for a message without frames.
        """
        msg = [f if type(f) is bytes else _frame(f) for f in frames]
        if not msg:
            raise ValueError("a message has at least one frame")
        if self._sparts:
            msg = self._sparts + msg
            self._sparts = []
        if not self._put(msg):
            self._send_wait(msg, timeout)

    def send_string(self, text: str, more: bool = False, encoding: str = "utf-8",
                    timeout: float | None = None) -> None:
        """Send ``text`` encoded (UTF-8 by default) as one frame.

        Args:
            text: the frame's text.
            more: more frames of this message follow.
            encoding: the text's encoding.
            timeout: seconds to wait at most; None means the ``sndtimeo`` option.
        """
        self.send(text.encode(encoding), more, timeout)

    def _send_wait(self, msg: Message, timeout: float | None) -> None:
        limit = _limit(timeout, self.sndtimeo)
        if limit == 0:
            raise Timeout("send would block (sndtimeo/timeout is 0)", 0)
        deadline = None if limit is None else monotonic() + limit
        strategy = self._strategy
        while True:
            self._park(self._swait, self._signal_out, deadline, limit, "send")
            strategy = self._strategy
            if strategy.send(msg):
                if self._swait and strategy.can_send():
                    self._signal_out()
                return

    # ------------------------------------------------------------------ receiving
    def recv(self, timeout: float | None = None) -> bytes:
        """Receive the next frame; `rcvmore` tells whether the message has more.

        Args:
            timeout: seconds to wait at most; None means the ``rcvtimeo`` option.

        Returns:
            the frame's bytes.

        Raises:
            Timeout: nothing arrived in time.
            BadState: REQ/REP order broken. NotSupported: this type cannot receive.
            SocketClosed: the socket is closed.
        """
        parts = self._rparts
        if parts:
            return parts.pop(0)
        msg = self._take()
        if msg is None:
            msg = self._recv_wait(timeout)
        if len(msg) > 1:
            self._rparts = msg[1:]
        return msg[0]

    def recv_multipart(self, timeout: float | None = None) -> list[bytes]:
        """Receive a whole message (the rest of it, after `recv` took its first frames).

        Args:
            timeout: seconds to wait at most; None means the ``rcvtimeo`` option.

        Returns:
            the message's frames.

        Raises:
            as `recv`.
        """
        if self._rparts:
            msg, self._rparts = self._rparts, []
            return msg
        msg = self._take()
        if msg is None:
            return self._recv_wait(timeout)
        return msg

    def recv_string(self, encoding: str = "utf-8", timeout: float | None = None) -> str:
        """Receive one frame, decoded (UTF-8 by default).

        Args:
            encoding: the frame's encoding.
            timeout: seconds to wait at most; None means the ``rcvtimeo`` option.

        Returns:
            the decoded frame.

        Raises:
            dhaga.Timeout: no frame within the timeout.
            SocketClosed: the socket was closed.
            UnicodeDecodeError: the frame is not valid in ``encoding``.
        """
        return self.recv(timeout).decode(encoding)

    def _recv_wait(self, timeout: float | None) -> Message:
        limit = _limit(timeout, self.rcvtimeo)
        if limit == 0:
            raise Timeout("nothing to receive (rcvtimeo/timeout is 0)", 0)
        deadline = None if limit is None else monotonic() + limit
        while True:
            self._park(self._rwait, self._signal_in, deadline, limit, "recv")
            strategy = self._strategy
            msg = strategy.recv()
            if msg is not None:
                if self._rwait and strategy.can_recv():
                    self._signal_in()
                return msg

    # ------------------------------------------------------------------ waiting
    def _park(self, queue: deque, signal: Any, deadline: float | None, limit: float | None,
              what: str) -> None:
        sched = get_scheduler()
        if sched is not self._sched:
            raise RuntimeError("a dhaga.mq socket is used by the OS thread that made it only")
        mine = ticket()
        queue.append(mine)
        left = None if deadline is None else max(0.0, deadline - monotonic())
        try:
            woken = park(mine, left, False)
        except BaseException:
            _leave(queue, mine, signal)
            raise
        if woken is False:
            _leave(queue, mine, signal)
            raise Timeout(f"{what} timed out after {limit}s", limit)

    def _signal_in(self) -> None:
        """Something may be received: wake one receiver and every poller."""
        if self._rwait:
            wake(self._rwait.popleft(), True)
        if self._pollers:
            self._wake_pollers()

    def _signal_out(self) -> None:
        """Something may be sent: wake one sender and every poller."""
        if self._swait:
            wake(self._swait.popleft(), True)
        if self._pollers:
            self._wake_pollers()

    def _wake_pollers(self) -> None:
        pollers, self._pollers = self._pollers, []
        for t in pollers:
            wake(t, True)

    def _check_open(self) -> None:
        if self._closed:
            raise SocketClosed("the socket is closed")

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, prefix: bytes | str) -> None:
        """SUB/XSUB: receive the messages whose first frame starts with ``prefix``
        (``b""``: everything). Each call needs its own `unsubscribe`.

        Args:
            prefix: the topic prefix (a str is UTF-8 encoded).
        """
        strategy = self._strategy
        if not isinstance(strategy, Sub):
            self._check_open()
            raise NotSupported(f"a {self._kind} socket has no subscriptions")
        strategy.subscribe(prefix.encode() if isinstance(prefix, str) else bytes(prefix))

    def unsubscribe(self, prefix: bytes | str) -> None:
        """SUB/XSUB: undo one `subscribe` of ``prefix``.

        Args:
            prefix: a prefix given to `subscribe`.
        """
        strategy = self._strategy
        if not isinstance(strategy, Sub):
            self._check_open()
            raise NotSupported(f"a {self._kind} socket has no subscriptions")
        strategy.unsubscribe(prefix.encode() if isinstance(prefix, str) else bytes(prefix))

    # ------------------------------------------------------------------ transports' side
    def _new_pipe(self, endpoint: str, persistent: bool) -> Pipe:
        """A pipe for a stream connection, with this socket's high-water marks."""
        pipe = Pipe(self._strategy, Channel(self.rcvhwm), Channel(self.sndhwm), endpoint)
        pipe.persistent = persistent
        return pipe

    def _attach(self, pipe: Pipe) -> bool:
        """Give a new pipe to the strategy; False if it refuses it (PAIR taken, id in use)."""
        if self._closed:
            return False
        return self._strategy.attach(pipe)

    def _terminated(self, pipe: Pipe) -> None:
        """A pipe's connection ended for good (its inbound messages stay readable)."""
        if self._closed:
            pipe.alive = False
            if self._flushwait:
                self._flushed()  # a lingering close stops waiting for this pipe
        elif pipe.alive:
            self._strategy.terminated(pipe)

    def _flushed(self) -> None:
        """A session sent all it had, or ended: wake a lingering `close`."""
        waiters, self._flushwait = self._flushwait, []
        for t in waiters:
            wake(t, True)

    def _pending_out(self, strategy: Strategy) -> bool:
        """Whether messages still wait to go out: in a session, or in a pipe that waits for
        its connection (``strategy``: the one the socket had before it was closed)."""
        if any(s.busy() for s in self._sessions):
            return True
        return any(p.persistent and p.outc.q and p.alive for p in strategy.pipes)

    # ------------------------------------------------------------------ closing
    def close(self, linger: int | None = None) -> None:
        """Close the socket; wake its waiters with `SocketClosed`.

        Args:
            linger: ms to wait for queued messages to reach connected (or connecting) peers;
                None uses the ``linger`` option (default -1: as long as it takes); 0 drops
                them. From a coroutine on the loop, the lingering happens in a new dhaga.
        """
        if self._closed:
            return
        self._closed = True
        linger = self.linger if linger is None else linger
        strategy = self._strategy
        self._strategy = Closed(self)
        self._take, self._put = self._strategy.recv, self._strategy.send
        exc = SocketClosed("the socket was closed")
        for queue in (self._rwait, self._swait):
            while queue:
                wake(queue.popleft(), None, exc)
        self._wake_pollers()
        for handles in self._endpoints.values():
            for handle in handles:
                handle.stop_accepting()
        if linger != 0 and self._pending_out(strategy):
            try:
                self._sched.waiter()
            except BlockingError:
                self._sched.spawn(self._linger_then_stop, linger, strategy)
                return
            self._linger_then_stop(linger, strategy)
        else:
            self._stop(strategy)

    def _linger_then_stop(self, linger: int, strategy: Strategy) -> None:
        deadline = None if linger < 0 else monotonic() + linger / 1000
        try:
            while self._pending_out(strategy):
                left = None if deadline is None else deadline - monotonic()
                if left is not None and left <= 0:
                    break
                mine = ticket()
                self._flushwait.append(mine)
                try:
                    park(mine, left, False)
                finally:
                    if mine in self._flushwait:
                        self._flushwait.remove(mine)
        finally:
            self._stop(strategy)

    def _stop(self, strategy: Strategy) -> None:
        endpoints, self._endpoints = self._endpoints, {}
        for handles in endpoints.values():
            for handle in handles:
                handle.close()
        for session in list(self._sessions):
            session.stop()
        strategy.pipes.clear()
        strategy.ready.clear()
        strategy.active.clear()


def _transport(endpoint: str) -> Any:
    """The module that handles ``endpoint``'s transport (imported on first use)."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or not rest:
        raise ValueError(f"malformed endpoint {endpoint!r}: expected transport://address")
    if scheme == "inproc":
        from . import inproc

        return inproc
    if scheme in ("tcp", "ipc"):
        from . import transport

        return transport
    raise ValueError(f"unknown transport {scheme!r} in {endpoint!r}: use tcp, ipc or inproc")


def _limit(timeout: float | None, option_ms: int) -> float | None:
    if timeout is not None:
        if timeout < 0:
            raise ValueError("timeout must be >= 0 or None")
        return timeout
    return None if option_ms < 0 else option_ms / 1000


def _leave(queue: deque, ticket: tuple[Any, int], signal: Any) -> None:
    """Take a ticket out of a wait queue; if a signal already took it, pass the signal on."""
    try:
        queue.remove(ticket)
    except ValueError:
        signal()
