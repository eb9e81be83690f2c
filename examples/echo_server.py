"""An echo server: one dhaga per connection, plain blocking code, thousands of clients.

Run it: ``python examples/echo_server.py [PORT]`` (port 0, the default, picks a free one), then
``nc 127.0.0.1 PORT``. With ``--selftest`` it starts, talks to itself with 100 concurrent
clients, prints what happened, and exits (the test suite runs it this way).
"""

from __future__ import annotations

import sys

import dhaga
from dhaga import net


def echo(sock: net.socket, address: tuple) -> None:
    """Handle one connection: send back every byte until the client hangs up."""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(data)


def selftest(server: net.StreamServer) -> None:
    def client(i: int) -> bool:
        with net.create_connection(server.address, timeout=5) as c:
            message = b"hello %d\n" % i
            c.sendall(message)
            reply = b""
            while len(reply) < len(message):
                reply += c.recv(100)
            return reply == message

    clients = [dhaga.spawn(client, i) for i in range(100)]
    ok = sum(d.result() for d in clients)
    print(f"{ok}/100 clients got their echo from {server.address[0]}:{server.address[1]}")
    server.stop(timeout=1)


def main(argv: list[str]) -> int:
    port = int(next((a for a in argv if a.isdigit()), "0"))
    server = net.StreamServer(("127.0.0.1", port), echo)
    server.start()
    if "--selftest" in argv:
        dhaga.run(selftest, server)
        return 0
    print(f"echo server on {server.address[0]}:{server.address[1]} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
