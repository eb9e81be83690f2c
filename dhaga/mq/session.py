"""A ZMTP session: one stream connection carrying one pipe, with a reader and a writer dhaga.

How this works
--------------
`Session.run` is the reader: it sends our greeting and READY, reads the peer's, checks that the
two socket types may talk, and gets a pipe (the connecting socket's persistent one, or a new
one the socket must accept: a PAIR already taken or a ROUTER identity in use refuse it). Then
it reads 64 KiB at a time, feeds the codec, and appends whole messages to the pipe's inbound
queue; the socket hears of it only when the queue turns non-empty. When the queue reaches the
high-water mark the reader stops reading (the peer then feels TCP's back-pressure) until the
socket has taken half of it.

The writer dhaga sleeps until the pipe's outbound queue turns non-empty, then takes everything
queued, encodes it into one buffer (over CURVE the codec's ``encode_messages`` seals the whole
batch in it, in place) and writes it with one ``sendall``: a sender in a tight loop pays a deque
append per message, not a system call. PONGs and PINGs go through the same buffer.

Heartbeats are one loop timer per session (``heartbeat_ivl``): it queues a PING, drops the
connection when nothing came back within ``heartbeat_timeout``, or when the peer's own PING
TTL ran out. Dropping shuts the stream down; the reader then ends and cleans up: the pipe is
given back to its socket (terminated, or kept for the next connection if it is persistent),
and the reason is logged. Messages already queued to the socket stay readable.

This module must not know how to open connections, nor how socket types route.
"""

from __future__ import annotations

import logging
import socket as _stdsocket
from time import monotonic
from typing import Any

from .._core.parking import Slot
from ..codecs.zmtp import (
    Cancel,
    Error,
    Ping,
    Pong,
    Ready,
    Subscribe,
    ZMTPConnection,
    compatible,
    mismatch_reason,
)
from ..errors import Killed, MessageTooLarge, ProtocolError
from ..scheduler import current, get_scheduler, spawn
from .security import handshake_for

__all__ = ["Session", "Ended"]

log = logging.getLogger("dhaga.mq")

_CHUNK = 64 * 1024  # bytes read per recv_into
_BATCH = 256 * 1024  # bytes encoded per sendall, at most (more if one message is larger)
_PUBLISHERS = ("PUB", "XPUB")


class Ended(Exception):
    """Why a session ended. ``refused``: the peer sent ERROR (do not reconnect);
    ``quiet``: an ordinary end, logged at debug level only."""

    def __init__(self, reason: str, refused: bool = False, quiet: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused
        self.quiet = quiet


class Session:
    """One ZMTP connection between a socket and a peer, over a connected green stream socket.

    Args:
        sock: the `dhaga.mq.Socket`.
        stream: a connected stream socket with ``recv_into``, ``sendall``, ``shutdown``,
            ``close`` that park the calling dhaga (a `dhaga.net.socket`).
        endpoint: the peer, for logs.
        pipe: the connecting socket's persistent pipe; None to ask the socket for a new one.

    Attributes:
        handshaken: whether the handshake completed (the connection carried traffic).
        refused: whether the peer refused us with an ERROR command.
    """

    def __init__(self, sock: Any, stream: Any, endpoint: str, pipe: Any = None) -> None:
        self.sock = sock
        self.stream = stream
        self.endpoint = endpoint
        self.pipe = pipe
        self.handshaken = False
        self.refused = False
        maxmsgsize = sock.maxmsgsize
        mechanism, authenticate = handshake_for(sock, stream)  # PLAIN, CURVE, ZAP
        self.conn = ZMTPConnection(
            sock.kind, identity=sock.routing_id, minor=sock.zmtp_minor,
            maxmsgsize=None if maxmsgsize < 0 else maxmsgsize, bare_messages=True,
            mechanism=mechanism, authenticate=authenticate,
        )
        self._reason: str | None = None
        self._reason_level = logging.WARNING
        self._ctl: list[bytes] = []
        self._reader: Any = None
        self._writer: Any = None
        self._reader_slot = Slot()  # where the reader parks while the inbox is full
        self._writer_slot = Slot()  # where the writer parks while nothing is to be sent
        self._writing = False
        self._stopped = False
        self._cleaned = False
        self._timer: Any = None
        self._ivl = self._hb_timeout = 0.0
        self._ttl = 0
        self.last_rx = monotonic()
        self._next_ping = 0.0
        self._ping_at: float | None = None
        self._peer_ttl = 0.0
        self.pings = self.pongs = 0  # PINGs answered, PONGs received (seen by tests)

    def __repr__(self) -> str:
        return f"<Session {self.sock.kind} <-> {self.endpoint}>"

    # ------------------------------------------------------------------ the reader
    def run(self) -> None:
        """Run the connection until it ends (in the calling dhaga); never raises but Killed."""
        sock = self.sock
        self._reader = current()
        sock._sessions.add(self)
        level, reason = logging.DEBUG, "closed"
        try:
            events, error = self._handshake()
            self._plug()
            if error is not None:  # the peer broke the protocol right after its READY
                self._dispatch(events)  # what came whole before the bad bytes is delivered
                raise error
            self._writer = spawn(self._write_loop)
            self._writer.name = f"mq-writer {self.endpoint}"
            self._start_heartbeats()
            self._read_loop(events)
        except Ended as exc:
            level = logging.DEBUG if exc.quiet else logging.WARNING
            reason = str(exc)
            self.refused = exc.refused
        except MessageTooLarge as exc:
            level, reason = logging.WARNING, f"message over maxmsgsize: {exc}"
        except ProtocolError as exc:
            level, reason = logging.WARNING, f"protocol error: {exc}"
        except OSError as exc:
            level, reason = logging.INFO, f"connection lost: {exc}"
        except Killed:
            reason = "socket closed"
            raise
        finally:
            if self._reason is not None:  # an abort explains the EOF or error that followed
                level, reason = self._reason_level, self._reason
            if self._stopped:
                level = logging.DEBUG
            log.log(level, "%s socket: dropped connection with %s: %s",
                    sock.kind, self.endpoint, reason)
            self._cleanup()

    def _recv_events(self, buf: bytearray, view: memoryview) -> list[Any]:
        n = self.stream.recv_into(buf)
        if not n:
            if self.conn.partial:
                raise Ended("peer vanished in the middle of a frame")
            raise Ended("peer closed the connection", quiet=True)
        self.last_rx = monotonic()
        try:
            return self.conn.receive_data(view[:n])
        except ProtocolError as exc:
            early = getattr(exc, "events", ())
            if self.handshaken and early:
                self._dispatch(early)  # what came whole before the bad bytes is delivered
            raise

    def _handshake(self) -> tuple[list[Any], ProtocolError | None]:
        """Exchange greetings and READYs; return what followed the peer's READY, and the
        protocol error that came after it in the same bytes, if one did."""
        sock, conn = self.sock, self.conn
        error = None
        timer = None
        if sock.handshake_ivl:
            timer = get_scheduler().loop.call_later(
                sock.handshake_ivl / 1000, self.abort,
                f"handshake not complete after {sock.handshake_ivl} ms")
        try:
            self.stream.sendall(conn.initiate() + conn.encode_ready())
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            events: list[Any] = []
            while True:  # until the peer's READY (judged first, whatever follows it) or ERROR
                i = next((i for i, ev in enumerate(events) if isinstance(ev, (Ready, Error))),
                         None)
                if i is not None or error is not None:
                    break
                try:
                    events += self._recv_events(buf, view)
                except ProtocolError as exc:
                    events += getattr(exc, "events", ())
                    error = exc
                out = conn.data_to_send()  # a security handshake's answer, or its ERROR
                if out:
                    self.stream.sendall(out)
        finally:
            if timer is not None:
                timer.cancel()
        if i is None:
            raise error  # type: ignore[misc]
        ready = events[i]
        if isinstance(ready, Error):
            raise Ended(f"peer refused the connection: {ready.reason}", refused=True)
        if not compatible(sock.kind, ready.socket_type):
            try:
                reason = mismatch_reason(sock.kind, ready.socket_type)
                self.stream.sendall(conn.encode_error(reason))
            except OSError:
                pass
            raise Ended(f"socket type mismatch: a {sock.kind} socket cannot talk to a "
                        f"{ready.socket_type!r} socket")
        return events[i + 1 :], error

    def _plug(self) -> None:
        sock, ready = self.sock, self.conn.peer
        assert ready is not None
        pipe = self.pipe
        if pipe is None:
            pipe = sock._new_pipe(self.endpoint, persistent=False)
            pipe.identity = ready.identity
            pipe.peer_type = ready.socket_type
            if not sock._attach(pipe):
                why = "it has its one peer already" if sock.kind == "PAIR" else (
                    f"routing id {ready.identity!r} is in use")
                raise Ended(f"the {sock.kind} socket refused the connection: {why}")
            self.pipe = pipe
        else:
            pipe.peer_type = ready.socket_type
            pipe.identity = ready.identity
        self.handshaken = True
        pipe.session = self
        pipe.connected = True
        pipe.inc.full = False
        pipe.inc.on_room = self._wake_reader
        pipe.outc.on_data = self._wake_writer
        sock._strategy.connected(pipe)

    def _read_loop(self, events: list[Any]) -> None:
        self._dispatch(events)
        inc = self.pipe.inc
        q = inc.q
        hwm = inc.hwm
        on_data = inc.on_data
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        recv_events = self._recv_events
        conn = self.conn
        extend = q.extend
        while True:
            if hwm and len(q) >= hwm:
                inc.full = True
                self._park_reader()
                continue
            events = recv_events(buf, view)
            if conn.other_events:
                self._dispatch(events)
            elif events:  # messages only (bare frame lists): queue them in one call
                was_empty = not q
                extend(events)
                if was_empty:
                    on_data()

    def _dispatch(self, events: Any) -> None:
        """Queue messages (bare frame lists) and act on commands, in order."""
        inc = self.pipe.inc
        q = inc.q
        for ev in events:
            if type(ev) is list:
                q.append(ev)
                if len(q) == 1:
                    inc.on_data()
            else:
                self._command(ev)

    def _command(self, ev: Any) -> None:
        if isinstance(ev, (Subscribe, Cancel)):
            if self.sock.kind in _PUBLISHERS:
                self._dispatch([[(b"\x01" if isinstance(ev, Subscribe) else b"\x00") + ev.topic]])
        elif isinstance(ev, Ping):
            self.pings += 1
            self._queue_ctl(self.conn.encode_pong(ev.context))
            if ev.ttl and not self._peer_ttl:
                self._peer_ttl = ev.ttl / 10
                self._schedule_tick()
            elif ev.ttl:
                self._peer_ttl = ev.ttl / 10
        elif isinstance(ev, Pong):
            self.pongs += 1
        elif isinstance(ev, Error):
            raise Ended(f"peer sent ERROR: {ev.reason}", refused=True)

    def _park_reader(self) -> None:
        self._reader_slot.park()

    def _wake_reader(self) -> None:
        self._reader_slot.wake()

    # ------------------------------------------------------------------ the writer
    def _write_loop(self) -> None:
        outc = self.pipe.outc
        q = outc.q
        popleft = q.popleft
        ctl = self._ctl
        sendall = self.stream.sendall
        conn = self.conn
        subscriptions = self.sock.kind in ("SUB", "XSUB") and conn.minor == 1
        encode_message = conn.encode_message  # CURVE's seals each frame
        # CURVE seals a whole batch in one buffer (the codec's encode_messages)
        sealed = conn.sealed and not subscriptions
        encode_messages = conn.encode_messages
        try:
            while True:
                if not q and not ctl:
                    if self.sock._flushwait:
                        self.sock._flushed()
                    self._park_writer()
                    continue
                out = bytearray()
                if ctl:
                    for command in ctl:
                        out += command
                    ctl.clear()
                if sealed:
                    if q:
                        batch = encode_messages(q, _BATCH)
                        if out:
                            out += batch
                        else:
                            out = batch
                while q and len(out) < _BATCH:
                    msg = popleft()
                    if subscriptions and len(msg) == 1 and msg[0][:1] in (b"\x01", b"\x00"):
                        topic = msg[0][1:]
                        out += (conn.encode_subscribe(topic) if msg[0][0]
                                else conn.encode_cancel(topic))
                    else:
                        out += encode_message(msg)
                if outc.full and len(q) <= outc.lwm:
                    outc.full = False
                    outc.on_room()
                self._writing = True
                sendall(out)
                self._writing = False
        except Exception as exc:  # noqa: BLE001 - the reader logs the end
            self._writing = False
            if not self._stopped:
                self.abort(f"connection lost while writing: {exc}",
                           logging.INFO if isinstance(exc, OSError) else logging.WARNING)

    def _park_writer(self) -> None:
        self._writer_slot.park()

    def _wake_writer(self) -> None:
        self._writer_slot.wake()

    def _queue_ctl(self, command: bytes) -> None:
        self._ctl.append(command)
        self._wake_writer()

    def busy(self) -> bool:
        """Whether messages or commands are still waiting to go out."""
        pipe = self.pipe
        return self._writing or bool(self._ctl) or (
            pipe is not None and pipe.session is self and bool(pipe.outc.q))

    # ------------------------------------------------------------------ heartbeats
    def _start_heartbeats(self) -> None:
        sock = self.sock
        self._ivl = sock.heartbeat_ivl / 1000
        timeout = sock.heartbeat_timeout
        self._hb_timeout = (sock.heartbeat_ivl if timeout < 0 else timeout) / 1000
        self._ttl = min(sock.heartbeat_ttl // 100, 0xFFFF)
        if self._ivl:
            self._next_ping = monotonic() + self._ivl
            self._schedule_tick()

    def _schedule_tick(self) -> None:
        if self._cleaned:
            return
        now = monotonic()
        due = []
        if self._ivl:
            due.append(self._next_ping)
        if self._ping_at is not None:
            due.append(self._ping_at + self._hb_timeout)
        if self._peer_ttl:
            due.append(self.last_rx + self._peer_ttl)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if due:
            self._timer = get_scheduler().loop.call_later(max(0.0, min(due) - now), self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = monotonic()
        if self._ivl and now >= self._next_ping:
            self._queue_ctl(self.conn.encode_ping(self._ttl))
            self._next_ping = now + self._ivl
            if self._hb_timeout and self._ping_at is None:
                self._ping_at = now
        if self._ping_at is not None:
            if self.last_rx >= self._ping_at:
                self._ping_at = None
            elif now - self._ping_at >= self._hb_timeout:
                self.abort(f"nothing heard for {self._hb_timeout:g}s after a PING "
                           "(heartbeat_timeout)")
                return
        if self._peer_ttl and now - self.last_rx >= self._peer_ttl:
            self.abort(f"nothing heard within the peer's heartbeat TTL of {self._peer_ttl:g}s")
            return
        self._schedule_tick()

    # ------------------------------------------------------------------ ending
    def abort(self, reason: str, level: int = logging.WARNING) -> None:
        """Drop the connection for ``reason`` (logged at ``level``); callable from a loop
        callback."""
        if self._reason is None:
            self._reason, self._reason_level = reason, level
        try:
            self.stream.shutdown(_stdsocket.SHUT_RDWR)
        except OSError:
            pass

    def stop(self) -> None:
        """End the session now, quietly (its socket is closing or its endpoint dropped)."""
        if self._stopped:
            return
        self._stopped = True
        me = current()
        for d in (self._writer, self._reader):
            if d is not None and d is not me and not d.done():
                d.kill(block=False)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        writer = self._writer
        if writer is not None and writer is not current() and not writer.done():
            writer.kill(block=False)
        try:
            self.stream.close()
        except OSError:
            pass
        sock = self.sock
        sock._sessions.discard(self)
        pipe = self.pipe
        if pipe is not None and pipe.session is self:
            pipe.session = None
            pipe.connected = False
            pipe.inc.on_room = None
            pipe.inc.full = False
            pipe.outc.on_data = None
            if not pipe.persistent:
                sock._terminated(pipe)
        if sock._flushwait:
            sock._flushed()
