"""A CURVE-secured REP server and REQ client, with an Authenticator that lets only known clients in.

Run it as is: it makes key pairs (`dhaga.mq.curve_keypair()`), starts the Authenticator with
the one client key it trusts, serves a REP socket over CURVE on a free port, and sends requests
from the trusted client (answered, encrypted on the wire) and from a stranger with a key of its
own (refused during the handshake: its request is never delivered).
"""

from __future__ import annotations

import logging

import dhaga
from dhaga import mq


def main() -> None:
    server_public, server_secret = mq.curve_keypair()
    client_public, client_secret = mq.curve_keypair()
    stranger_public, stranger_secret = mq.curve_keypair()
    print(f"server public key: {server_public}")

    auth = mq.Authenticator()
    auth.allow("127.0.0.1")  # addresses first; then the keys
    auth.configure_curve(keys={client_public})
    with auth, mq.Socket(mq.REP, curve_server=True, curve_publickey=server_public,
                         curve_secretkey=server_secret) as server:
        endpoint = server.bind("tcp://127.0.0.1:*")

        def serve() -> None:
            while True:
                request = server.recv()
                server.send(b"hello, " + request)

        dhaga.spawn(serve)

        with mq.Socket(mq.REQ, curve_serverkey=server_public, curve_publickey=client_public,
                       curve_secretkey=client_secret) as client:
            client.connect(endpoint)
            for name in (b"alice", b"bob"):
                client.send(name)
                print("trusted client got:", client.recv(timeout=5).decode())

        with mq.Socket(mq.REQ, curve_serverkey=server_public, curve_publickey=stranger_public,
                       curve_secretkey=stranger_secret, linger=0) as stranger:
            stranger.connect(endpoint)
            stranger.send(b"mallory")
            try:
                stranger.recv(timeout=0.5)
            except dhaga.Timeout:
                print("stranger refused: no reply, and the server never saw its request")


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # the refusal is logged at WARNING
    dhaga.run(main)
