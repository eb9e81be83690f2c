"""RPC server limits: a pipelining client is back-pressured, a gone client's work is cancelled,
and a message bomb is refused before it costs anything.

A server configured as docs/security.md suggests for public exposure meets three hostile
clients (plain sockets, as an attacker would use) while a well-behaved client keeps calling.
"""

import dhaga
from dhaga import net, rpc
from dhaga.codecs.msgpack_rpc import encode_request

running = 0
most = 0
cancelled = 0


def slow(i):
    global running, most, cancelled
    running += 1
    most = max(most, running)
    try:
        dhaga.sleep(30)  # stands for a slow query
        return i
    except BaseException:
        cancelled += 1
        raise
    finally:
        running -= 1


def main():
    server = rpc.Server(max_message_size=1 << 20, max_objects=100_000, max_in_flight=64,
                        max_in_flight_total=4096, idle_timeout=300)
    server.register("slow", slow)
    server.register("echo", lambda x: x)
    server.listen(("127.0.0.1", 0))
    server.start()
    with rpc.Client(server.address, timeout=10) as good:
        # 1. 2,000 pipelined calls to a slow method: 64 run, the rest wait unread.
        flood = net.create_connection(server.address)
        flood.sendall(b"".join(encode_request(i, "slow", [i]) for i in range(2000)))
        while running < 64:
            dhaga.sleep(0.01)
        print(f"pipelined 2000 slow calls: {running} running (max_in_flight=64),",
              f"echo still answers: {good.call('echo', 'hi')}")
        # 2. The flooding client leaves: its running handlers are cancelled. (The server sees
        # the client's FIN behind the bytes it has not read yet: a client that pipelined more
        # than the socket buffers hold is seen leaving only as the server reads on.)
        flood.close()
        while running:
            dhaga.sleep(0.05)
        print(f"client gone: {cancelled} handlers cancelled, {running} running, most {most}")
        # 3. 0xdd + count + 0x90 x count: a million empty arrays in 1 MiB.
        count = 1_000_000
        bomb = net.create_connection(server.address)
        try:
            bomb.sendall(b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count)
            closed = bomb.recv(1) == b""
        except ConnectionResetError:  # closed with our bytes still unread: a reset
            closed = True
        bomb.close()
        print(f"array bomb refused (connection closed: {closed}),",
              f"echo still answers: {good.call('echo', 'hi')}")
    server.stop()


if __name__ == "__main__":
    dhaga.run(main)
