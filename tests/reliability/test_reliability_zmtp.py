"""Hostile ZMTP peers against a bound dhaga.mq PULL: closed, others still served, fds and memory back.

A raw peer (a green socket) sends exactly the bytes of each case, before or after a correct
NULL handshake; a well-behaved PUSH keeps delivering through it all.
"""

from __future__ import annotations

import pytest
from mq_helpers import make  # noqa: F401 - fixture
from reliability_kit import baseline, send_and_read_until_closed

from dhaga import mq
from dhaga.codecs.zmtp import ZMTPConnection, encode_message

TCP = "tcp://127.0.0.1:*"


def address(endpoint: str) -> tuple[str, int]:
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    return host, int(port)


def handshake() -> bytes:
    conn = ZMTPConnection("PUSH")
    return conn.initiate() + conn.encode_ready()


def greeting(major: int = 3, minor: int = 1, mechanism: bytes = b"NULL", server: int = 0) -> bytes:
    return (b"\xff" + bytes(8) + b"\x7f" + bytes((major, minor)) + mechanism.ljust(20, b"\0")
            + bytes((server,)) + bytes(31))


def command(name: bytes, body: bytes = b"") -> bytes:
    payload = bytes((len(name),)) + name + body
    return b"\x04" + bytes((len(payload),)) + payload


CASES = {  # bytes a peer sends; the PULL must close the connection
    "HTTP request for a greeting": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "64 bytes of garbage": bytes(range(64)),
    "signature without its 0x7f": b"\xff" + bytes(8) + b"\x00" + bytes(54),
    "ZMTP 2 greeting": greeting(major=2),
    "NULL mechanism claiming as-server": greeting(server=1) + command(b"READY"),
    "frame with reserved flag bits": handshake() + b"\x09garbage",
    "frame over maxmsgsize": handshake() + b"\x02" + (2000).to_bytes(8, "big") + b"x" * 10,
    "long frame announcing 2**63": handshake() + b"\x02" + (2**63).to_bytes(8, "big"),
    "command over MAX_COMMAND_SIZE": handshake() + b"\x06" + (10**6).to_bytes(8, "big"),
    "message before READY": greeting() + encode_message([b"early"]),
    "READY with a bad property": greeting() + command(b"READY", b"\x0bSocket-Type\xff\xff\xff\xff"),
    "READY for an incompatible type": greeting() + command(
        b"READY", b"\x0bSocket-Type" + (4).to_bytes(4, "big") + b"PULL"),
    "second READY": handshake() + command(b"READY", b"\x0bSocket-Type"
                                          + (4).to_bytes(4, "big") + b"PUSH"),
}


@pytest.fixture
def server(make):  # noqa: F811
    pull = make(mq.PULL, maxmsgsize=1000, handshake_ivl=5000)
    endpoint = pull.bind(TCP)
    good = make(mq.PUSH)
    good.connect(endpoint)
    good.send(b"hello")
    assert pull.recv(timeout=5) == b"hello"
    return pull, good, endpoint


def still_works(pull, good) -> None:
    good.send(b"after")
    assert pull.recv(timeout=5) == b"after"


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_peer_is_dropped(server, case):
    pull, good, endpoint = server
    send_and_read_until_closed(address(endpoint), CASES[case])  # first use: caches, imports
    still_works(pull, good)
    with baseline():
        send_and_read_until_closed(address(endpoint), CASES[case])
        still_works(pull, good)
