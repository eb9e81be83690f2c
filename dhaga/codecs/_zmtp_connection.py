"""ZMTPConnection: one ZMTP 3.x connection as a state machine, bytes in and events out.

This module must not know about sockets, schedulers or timers, nor what socket patterns do with
what arrives (routing, load balancing, subscription matching, when to send a PING).
"""

# How this works
# --------------
# A ZMTPConnection is fed whatever bytes arrived (receive_data) and answers with events. Bytes not
# used yet wait in one bytearray, ``_buf``, read from offset ``_pos``; the consumed prefix is
# dropped when everything was consumed (a cheap clear) or when it is over 64 KiB and larger than
# what remains, so nothing is copied more than a constant number of times. Frame bodies come out
# as ``bytes()`` of memoryview slices. ``_need`` is how many unread bytes the frame at ``_pos``
# needs: until they have arrived receive_data only appends, so a large frame arriving in many
# chunks is not re-parsed each time. Size limits are checked as soon as a frame header is
# complete, before its body is buffered.
#
# The phases follow the ZMTP grammar: GREETING (64 bytes, checked as they arrive, so garbage fails
# on its first byte), HANDSHAKE (the peer's READY, or ERROR), TRAFFIC (messages and commands
# intermixed); one chunk may hold all three. Frames with MORE are collected and reported as one
# Message (or, with bare_messages, as the bare list of frames: a socket layer queues those as they
# are, and when other_events is 0 it can extend its queue with the whole batch in one call). A
# one-frame message under 256 bytes, the commonest case, has its own short path. A command
# between two frames of a message is reported at once and leaves the message alone: libzmq can
# put a PING or PONG there when its output batch fills mid-message. A ProtocolError carries the
# events completed before the bad bytes (``events``), so no whole message is lost with them.
#
# libzmq sends its greeting in steps (10 bytes; the major version once it has our first 10; the
# rest once it has our 11th). initiate() returns our whole greeting, to send at once; nothing here
# waits for the peer before answering, so the two sides cannot deadlock.
#
# With a security mechanism (PLAIN, CURVE: `_zmtp_mechanisms`, `_zmtp_curve`) the HANDSHAKE
# phase is the mechanism's: each command of the peer goes to it, and what it answers waits in
# ``_out`` for data_to_send(). Once a CURVE handshake is done every frame is a sealed MESSAGE
# command, and `_zmtp_sealing.receive_sealed` reads the buffer instead of _receive_frames; the
# encode_* methods are then the sealer's, set on the instance.

from __future__ import annotations

from typing import Any

from ..errors import MessageTooLarge, ProtocolError
from ._zmtp_events import (
    Cancel,
    ConnectionState,
    Error,
    Event,
    Greeting,
    Message,
    Ping,
    Pong,
    Ready,
    Subscribe,
    UnknownCommand,
)
from ._zmtp_mechanisms import (
    Authenticate,
    AuthenticationFailed,
    Mechanism,
    authorize,
)
from ._zmtp_sealing import receive_sealed
from ._zmtp_socket_types import _IDENTITY_TYPES, SOCKET_TYPES
from ._zmtp_wire import (
    _GREETING_SIZE,
    _MAX_FRAME,
    MAX_COMMAND_SIZE,
    _compact,
    _encode_command,
    _encode_property,
    _fail,
    _parse_metadata,
    _unpack_size,
    encode_message,
)

_GREETING = ConnectionState.GREETING
_HANDSHAKE = ConnectionState.HANDSHAKE
_TRAFFIC = ConnectionState.TRAFFIC
_CLOSED = ConnectionState.CLOSED
_FAILED = ConnectionState.FAILED


class ZMTPConnection:
    """One ZMTP 3.x connection, as a state machine (like h11).

    Send ``initiate() + encode_ready()`` as soon as the transport is up, feed each chunk received
    to ``receive_data()``, send what ``data_to_send()`` then holds (a security handshake's
    answers), act on the events, and send what the ``encode_*()`` methods return.

    Args:
        socket_type: our socket type, one of SOCKET_TYPES.
        identity: our routing identity (for REQ, DEALER, ROUTER): at most 255 bytes, not
            starting with a zero byte (RFC 23 reserves those).
        as_server: the greeting's as-server flag (the NULL mechanism ignores it).
        minor: 1 to speak ZMTP 3.1, 0 to act as a ZMTP 3.0 peer.
        maxmsgsize: largest message (all its frames together) accepted from the peer, in
            bytes; None for no limit, as in libzmq.
        bare_messages: report each message as its bare list of frames instead of a `Message`
            (for a caller that queues messages as they are: it saves building an object per
            message, and with `other_events` lets it ``extend`` its queue in one call).
        mechanism: a security mechanism (`PlainClient`, `PlainServer`, `CurveClient`,
            `CurveServer`); None for NULL.
        authenticate: with NULL, the verdict on each peer, asked when its READY arrives
            (``authenticate("NULL", [])``; see `Authenticate`); None accepts every peer.

    Attributes:
        socket_type: our socket type.
        identity: our identity.
        peer: the peer's Ready event, once it arrived.
        other_events: how many of the events the last `receive_data` returned were not
            messages (the greeting, commands); 0 means they were all messages.

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        socket_type: str,
        identity: bytes = b"",
        as_server: bool = False,
        minor: int = 1,
        maxmsgsize: int | None = None,
        bare_messages: bool = False,
        mechanism: Mechanism | None = None,
        authenticate: Authenticate | None = None,
    ) -> None:
        if socket_type not in SOCKET_TYPES:
            raise ValueError(f"unknown socket type {socket_type!r}; expected one of SOCKET_TYPES")
        if minor not in (0, 1):
            raise ValueError(f"minor must be 0 (ZMTP 3.0) or 1 (ZMTP 3.1), not {minor!r}")
        if len(identity) > 255 or identity[:1] == b"\0":
            raise ValueError("identity must be at most 255 bytes and not start with a zero byte")
        if maxmsgsize is not None and maxmsgsize < 0:
            raise ValueError("maxmsgsize must be None (no limit) or at least 0")
        self.socket_type = socket_type
        self.identity = bytes(identity)
        self.peer: Ready | None = None
        self._our_minor = minor
        self._limit = _MAX_FRAME if maxmsgsize is None else maxmsgsize
        self._mech = mechanism
        self._authenticate = authenticate
        self._sealer: object | None = None
        self._out = bytearray()
        if mechanism is not None:
            as_server = mechanism.as_server
        self._mech_name = (b"NULL" if mechanism is None else mechanism.name.encode()).ljust(
            20, b"\0")
        self._greeting = b"".join(
            (b"\xff", bytes(8), b"\x7f", bytes((3, minor)), self._mech_name, bytes((as_server,)))
        ) + bytes(31)
        properties = _encode_property(b"Socket-Type", socket_type.encode("ascii"))
        if socket_type in _IDENTITY_TYPES or identity:
            properties += _encode_property(b"Identity", self.identity)
        if mechanism is not None:
            mechanism.metadata = properties
        self._ready = _encode_command(b"READY", properties)
        self._ready_sent = False
        self._state = _GREETING
        self._failure = ""
        self._minor: int | None = None
        self._buf = bytearray()
        self._pos = 0  # where the unread bytes of _buf start
        self._need = 1  # unread bytes needed before the next frame can be decoded
        self._frames: list[bytes] = []  # frames of the message being collected
        self._total = 0  # their size
        self._bare = bare_messages
        self.other_events = 0

    @property
    def state(self) -> ConnectionState:
        """Where the peer's side of the connection is."""
        return self._state

    @property
    def minor(self) -> int | None:
        """The negotiated minor version (0 or 1); None until the peer's greeting arrived."""
        return self._minor

    @property
    def handshake_complete(self) -> bool:
        """Whether READY was both sent (encode_ready) and received: messages may flow."""
        return self._ready_sent and self._state is _TRAFFIC

    @property
    def sealed(self) -> bool:
        """Whether traffic is sealed (a CURVE handshake completed): encode_messages then seals
        a whole batch in one buffer."""
        return self._sealer is not None

    @property
    def partial(self) -> bool:
        """Whether a frame or a multipart message has begun arriving but is not complete."""
        return bool(self._frames) or len(self._buf) > self._pos

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event | list[bytes]]:
        """Consume bytes from the peer, in chunks of any size.

        Args:
            data: the next bytes received (empty bytes do nothing).

        Returns:
            The events these bytes completed, in order; often none.

        Raises:
            MessageTooLarge: a frame or message announced more than ``maxmsgsize`` bytes.
            ProtocolError: the bytes broke ZMTP; the connection is FAILED and must be closed.
                The events completed earlier in the same ``data`` are in its ``events``
                attribute, so that messages before the bad bytes can still be delivered.
        """
        self.other_events = 0
        state = self._state
        if self._sealer is not None and state is _TRAFFIC:
            return self._receive_sealed(data)
        if state is not _TRAFFIC:
            if state is _FAILED:
                raise ProtocolError(f"connection already failed: {self._failure}")
            if state is _CLOSED:
                return []
        buf = self._buf
        buf += data
        if len(buf) - self._pos < self._need and state is not _GREETING:
            return []
        events: list[Event | list[bytes]] = []
        try:
            if state is _GREETING:
                self._receive_greeting(events)
                if self._state is _GREETING or len(buf) - self._pos < self._need:
                    return events
            self._receive_frames(events)
            if self._sealer is not None and self._state is _TRAFFIC and len(buf) > self._pos:
                receive_sealed(self, events)  # sealed traffic right behind the handshake
        except ProtocolError as exc:
            self._state, self._failure = _FAILED, str(exc)
            exc.events = events  # type: ignore[attr-defined]
            raise
        return events

    def _receive_sealed(self, data: bytes | bytearray | memoryview) -> list[Event | list[bytes]]:
        buf = self._buf
        buf += data
        events: list[Event | list[bytes]] = []
        if len(buf) - self._pos < self._need:
            return events
        try:
            receive_sealed(self, events)
        except ProtocolError as exc:
            self._state, self._failure = _FAILED, str(exc)
            exc.events = events  # type: ignore[attr-defined]
            raise
        return events

    def data_to_send(self) -> bytes:
        """Return (and forget) what the security handshake has to send: send it after every
        receive_data(), and before closing when authentication failed (the ERROR)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _receive_greeting(self, events: list[Event]) -> None:
        buf = self._buf
        size = len(buf)
        if size and buf[0] != 0xFF:
            raise _fail(f"not a ZMTP 3 peer: greeting starts with 0x{buf[0]:02x}, not 0xff", buf)
        if size >= 10 and not buf[9] & 1:
            raise _fail(f"not a ZMTP 3 peer: greeting byte 9 is 0x{buf[9]:02x}, not 0x7f", buf)
        if size >= 11 and buf[10] < 3:
            raise _fail(f"peer speaks ZMTP major version {buf[10]}: only 3.x is supported", buf)
        if size >= 32 and buf[12:32] != self._mech_name:
            name = bytes(buf[12:32]).rstrip(b"\0").decode("ascii", "replace")
            ours = self._mech_name.rstrip(b"\0").decode()
            raise _fail(f"peer requires the {name!r} mechanism; this socket uses {ours!r}", buf)
        # The as-server byte is not judged: libzmq 4.3 sends 0 whatever its role. Two clients
        # or two servers find out from the first handshake command instead.
        if size >= _GREETING_SIZE:
            major, minor = buf[10], buf[11]
            # A 3.0 peer gets 3.0; a 3.1-or-later peer gets what we speak (RFC 37).
            self._minor = min(minor, self._our_minor) if major == 3 else self._our_minor
            self._pos = _GREETING_SIZE
            self._state = _HANDSHAKE
            mechanism = self._mech_name.rstrip(b"\0").decode()
            events.append(Greeting(major, minor, mechanism, bool(buf[32])))
            self.other_events += 1

    def _receive_frames(self, events: list[Event]) -> None:
        buf = self._buf
        end = len(buf)
        pos = self._pos
        frames = self._frames
        total = self._total
        limit = self._limit
        traffic = self._state is _TRAFFIC
        need = 1
        view = memoryview(buf)
        append = events.append
        bare = self._bare
        try:
            while pos < end:
                flags = buf[pos]
                if flags == 0 and traffic and not frames and end - pos > 1:
                    # The commonest case on its own path: a one-frame message under 256 bytes.
                    start = pos + 2
                    stop = start + buf[pos + 1]
                    if stop <= end and stop - start <= limit:
                        frame = [bytes(view[start:stop])]
                        append(frame if bare else Message(frame))
                        pos = stop
                        continue
                if flags < 2:  # short message frame, the common case: 0 last, 1 MORE
                    if end - pos < 2:
                        need = 2
                        break
                    size = buf[pos + 1]
                    start = pos + 2
                elif flags == 2 or flags == 3:  # long message frame
                    if end - pos < 9:
                        need = 9
                        break
                    size = _unpack_size(buf, pos + 1)[0]
                    start = pos + 9
                    if size > _MAX_FRAME:
                        raise _fail(f"frame size {size} is over 2^63-1", view[pos:])
                elif flags == 4 or flags == 6:  # command, short or long
                    start = pos + (9 if flags == 6 else 2)
                    if start > end:
                        need = start - pos
                        break
                    size = _unpack_size(buf, pos + 1)[0] if flags == 6 else buf[pos + 1]
                    if size > MAX_COMMAND_SIZE:
                        raise _fail(f"{size}-byte command is over MAX_COMMAND_SIZE", view[pos:])
                    if start + size > end:
                        need = start + size - pos
                        break
                    frame = bytes(view[pos : start + size])
                    self._receive_command(frame, start - pos, events)
                    pos = start + size
                    if self._state is _CLOSED:  # after ERROR, nothing more is read
                        pos = end
                        break
                    if self._sealer is not None:  # CURVE is ready: the rest is sealed
                        break
                    traffic = True
                    continue
                else:
                    raise _fail(
                        f"frame flags 0x{flags:02x} "
                        + ("set reserved bits" if flags & 0xF8 else "mark a command with MORE"),
                        view[pos:],
                    )
                if not traffic:
                    raise _fail("expected the peer's READY command, got a message", view[pos:])
                if total + size > limit:
                    raise MessageTooLarge(
                        f"peer announced a {size}-byte frame, making a message of "
                        f"{total + size} bytes; maxmsgsize is {limit}",
                        bytes(view[pos:start]),
                    )
                stop = start + size
                if stop > end:
                    need = stop - pos
                    break
                frames.append(bytes(view[start:stop]))
                pos = stop
                if flags & 1:
                    total += size
                    continue
                append(frames if bare else Message(frames))
                frames = []
                total = 0
        finally:
            view.release()
        self._frames = frames
        self._total = total
        self._need = need
        self._pos = _compact(buf, pos, end)

    def _receive_command(self, frame: bytes, header: int, events: list[Event]) -> None:
        # frame: the whole command frame, its header included (errors carry it)
        self.other_events += 1
        size = frame[header] if len(frame) > header else 0
        if size == 0 or header + 1 + size > len(frame):
            raise _fail("malformed command: bad name length", frame)
        name = frame[header + 1 : header + 1 + size]
        data = frame[header + 1 + size :]
        if self._state is _HANDSHAKE and name != b"ERROR":
            if self._mech is not None:
                self._mechanism_command(name, data, frame, events)
            elif name != b"READY":
                raise _fail(f"expected the peer's READY command, got {name!r}", frame)
            else:
                self._peer_ready(_parse_metadata(data), frame, events)
                if self._authenticate is not None:
                    self._authorize("NULL", [])
        elif name == b"SUBSCRIBE":
            events.append(Subscribe(data))
        elif name == b"CANCEL":
            events.append(Cancel(data))
        elif name == b"PING":
            if len(data) < 2:
                raise _fail("PING without its 2-byte TTL", frame)
            events.append(Ping(int.from_bytes(data[:2], "big"), data[2:18]))
        elif name == b"PONG":
            events.append(Pong(data))
        elif name == b"ERROR":
            if not data or data[0] > len(data) - 1:
                raise _fail("malformed ERROR: bad reason length", frame)
            self._state = _CLOSED
            events.append(Error(data[1 : data[0] + 1].decode("utf-8", "replace")))
        elif name == b"READY":
            raise _fail("peer sent READY twice", frame)
        else:
            events.append(UnknownCommand(name.decode("latin-1"), data))

    def _peer_ready(self, properties: dict[str, bytes], frame: bytes, events: list) -> None:
        if "socket-type" not in properties:
            raise _fail("peer's metadata has no Socket-Type property", frame)
        socket_type = properties["socket-type"].decode("latin-1")
        self.peer = Ready(socket_type, properties.get("identity", b""), properties)
        self._state = _TRAFFIC
        events.append(self.peer)

    def _authorize(self, mechanism: str, credentials: list[bytes]) -> None:
        try:
            authorize(self._authenticate, mechanism, credentials)
        except AuthenticationFailed as exc:
            self._out += exc.reply
            raise

    def _mechanism_command(self, name: bytes, data: bytes, frame: bytes, events: list) -> None:
        mech = self._mech
        assert mech is not None
        try:
            out, properties = mech.command(name, data, frame)
        except AuthenticationFailed as exc:
            self._out += exc.reply
            raise
        self._out += out
        if properties is not None:
            self._peer_ready(properties, frame, events)
            self._ready_sent = True
            sealer = mech.sealer
            if sealer is not None:  # CURVE: from now on everything is sealed
                self._sealer = sealer
                self.encode_message = sealer.encode_message  # type: ignore[method-assign]
                self.encode_messages = sealer.encode_messages  # type: ignore[method-assign]
                self._encode = sealer.encode_command
                reseal = sealer.reseal
                self.encode_ping = lambda ttl=0, context=b"": reseal(  # type: ignore[method-assign]
                    ZMTPConnection.encode_ping(ttl, context))
                self.encode_pong = lambda context=b"": reseal(  # type: ignore[method-assign]
                    ZMTPConnection.encode_pong(context))
                self.encode_error = lambda reason: reseal(  # type: ignore[method-assign]
                    ZMTPConnection.encode_error(reason))

    def initiate(self) -> bytes:
        """Return our 64-byte greeting, to send first and whole."""
        return self._greeting

    def encode_ready(self) -> bytes:
        """Return our READY: Socket-Type, and Identity for REQ/DEALER/ROUTER (as libzmq).

        It may go right after the greeting, without waiting for the peer's; libzmq does so.
        With a security mechanism it is the mechanism's opening instead (a client's HELLO;
        nothing for a server): our metadata then travels in the handshake.
        """
        if self._mech is not None:
            return self._mech.start()
        self._ready_sent = True
        return self._ready

    encode_message = staticmethod(encode_message)

    @staticmethod
    def encode_messages(queue: Any, limit: int) -> bytes | bytearray:
        """Encode messages taken from the left of ``queue`` until the output reaches ``limit``.

        For a writer that queues messages: one call per batch (over CURVE, one buffer sealed
        in place) instead of one `encode_message` per message.

        Args:
            queue: a deque of messages (sequences of bytes-like frames); those encoded are
                popped, the first one always.
            limit: stop once this many bytes are encoded (one message may pass it).

        Returns:
            the wire bytes.

        Raises:
            ValueError: a message without frames (it is dropped from the queue).
        """
        out = bytearray()
        popleft, encode = queue.popleft, encode_message
        while queue and len(out) <= limit:
            out += encode(popleft())
        return out

    def encode_subscribe(self, topic: bytes) -> bytes:
        """Encode a subscription as the peer expects: SUBSCRIBE (3.1) or a message (3.0).

        Args:
            topic: the prefix to subscribe to.

        Returns:
            the bytes to send.

        Raises:
            RuntimeError: the peer's greeting, which tells its version, has not arrived.
        """
        return self._encode_subscription(b"SUBSCRIBE", b"\x01", topic)

    def encode_cancel(self, topic: bytes) -> bytes:
        """Encode the end of a subscription: CANCEL (3.1) or a message (3.0).

        Args:
            topic: a prefix subscribed to before.

        Returns:
            the bytes to send.

        Raises:
            RuntimeError: the peer's greeting has not arrived.
        """
        return self._encode_subscription(b"CANCEL", b"\x00", topic)

    def _encode_subscription(self, command: bytes, byte: bytes, topic: bytes) -> bytes:
        if self._minor is None:
            raise RuntimeError("the peer's ZMTP version is unknown until its greeting arrives")
        if self._minor:
            return self._encode(command, topic)
        return self.encode_message((byte + topic,))

    _encode = staticmethod(_encode_command)  # CURVE replaces it with the sealer's

    @staticmethod
    def encode_ping(ttl: int = 0, context: bytes = b"") -> bytes:
        """Encode a PING (ZMTP 3.1 defines it; a 3.0 peer ignores it).

        Args:
            ttl: how long the peer should wait for traffic before giving up, in deciseconds
                (0 to 65535; 0 gives no hint).
            context: at most 16 bytes, which the peer echoes in its PONG.

        Raises:
            ValueError: ttl or context out of range.
        """
        if not 0 <= ttl <= 0xFFFF:
            raise ValueError("ttl must be 0 to 65535 deciseconds")
        if len(context) > 16:
            raise ValueError("a PING context is at most 16 bytes")
        return _encode_command(b"PING", ttl.to_bytes(2, "big") + context)

    @staticmethod
    def encode_pong(context: bytes = b"") -> bytes:
        """Encode the PONG answering a PING with this context (at most 16 bytes).

        Raises:
            ValueError: context is over 16 bytes.
        """
        if len(context) > 16:
            raise ValueError("a PONG context is at most 16 bytes")
        return _encode_command(b"PONG", context)

    @staticmethod
    def encode_error(reason: str | bytes) -> bytes:
        """Encode an ERROR command: send it, then close the connection.

        Args:
            reason: why, at most 255 bytes once UTF-8 encoded (see mismatch_reason()).

        Raises:
            ValueError: reason is over 255 bytes.
        """
        raw = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
        if len(raw) > 255:
            raise ValueError("an ERROR reason is at most 255 bytes")
        return _encode_command(b"ERROR", bytes((len(raw),)) + raw)
