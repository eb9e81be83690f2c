"""Write the seed corpus of the fuzz targets into tests/fuzz/corpus/<target>/ (run once).

Usage: ``PYTHONPATH=. python tests/fuzz/make_corpus.py``
"""

from __future__ import annotations

import hashlib
import os

import msgpack

from dhaga.codecs.msgpack_rpc import (
    ExtHandle,
    encode_notification,
    encode_request,
    encode_response,
)
from dhaga.codecs.zmtp import ZMTPConnection, encode_message

HERE = os.path.dirname(os.path.abspath(__file__))


def msgpack_rpc_seeds() -> list[bytes]:
    return [
        encode_request(1, "echo", [1, "two", b"3", 4.5, None, True, [], {}]),
        encode_request(2**32 - 1, "nvim_buf_set_lines", [ExtHandle(0, 1), 0, -1, True, ["a"]]),
        encode_response(1, None, {"a": [1, 2, {"b": b"c"}]}),
        encode_response(7, ["ValueError", "bad"], None),
        encode_notification("event", ["x" * 40, -(2**63), 2**64 - 1]),
        encode_request(1, "a", [1]) + encode_notification("b", []) + encode_response(1, None, 0),
        msgpack.packb([0, 1, "m", [msgpack.Timestamp(1, 2), msgpack.ExtType(9, b"xyz")]]),
        b"\xdd\x00\x01\x00\x00" + b"\x90" * 64,
        b"\x94\x00\x01\xdb\xff\xff\xff\xff",
        b"\x91" * 40 + b"\xc0",
        b"\xc1",
    ]


def zmtp_seeds() -> list[bytes]:
    push = ZMTPConnection("PUSH")
    hello = push.initiate() + push.encode_ready()
    frames = encode_message([b"a", b"", b"x" * 300])
    return [
        hello,
        hello + frames,
        b"\x01" + frames,  # odd first byte: the target prepends a handshake
        b"\x01" + b"\x02" + (5000).to_bytes(8, "big"),
        b"\x01\x04\x05\x04PING\x00\x01",
        b"\x01\x04\x0d\x09SUBSCRIBEabc",
        b"\x00GET / HTTP/1.1\r\n\r\n",
    ]


def http_head_seeds() -> list[bytes]:
    return [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /p?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=\"v\"\r\nabc\r\n0\r\nTrailer: t\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\r\n",
        b"GET http://h/p HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ]


def main() -> None:
    for name, seeds in (("msgpack_rpc", msgpack_rpc_seeds()), ("zmtp", zmtp_seeds()),
                        ("http_head", http_head_seeds())):
        folder = os.path.join(HERE, "corpus", name)
        os.makedirs(folder, exist_ok=True)
        for seed in seeds:
            with open(os.path.join(folder, hashlib.sha1(seed).hexdigest()[:16]), "wb") as f:
                f.write(seed)


if __name__ == "__main__":
    main()
