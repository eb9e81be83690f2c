"""RPC fan-out: 10,000 concurrent blocking calls from 10,000 dhagas through one shared Client.

Each call waits on a "slow" remote method (50 ms). Written as plain sequential code, the whole
batch takes about one call's latency plus overhead, over a single TCP connection: the client
multiplexes the calls by msgid and the server runs each request in its own dhaga. (The server
runs in this process to keep the example self-contained; it could be anywhere.)
"""

import threading
import time

import dhaga
from dhaga import rpc

CALLS = 10_000


def start_server():
    # By default a connection may have 1,000 requests running at once (and it is not read
    # while it has): this demo runs all 10,000 of its one client's at once.
    server = rpc.Server(max_in_flight=CALLS)

    @server.method
    def slow_square(x):
        dhaga.sleep(0.05)  # stands for a database query, a disk read...
        return x * x

    server.listen(("127.0.0.1", 0))
    server.start()
    return server


def main():
    server = start_server()
    with rpc.Client(server.address, timeout=30) as client:
        start = time.perf_counter()
        with dhaga.Group() as group:  # every call is plain blocking code in its own dhaga
            calls = [group.spawn(client.call, "slow_square", i) for i in range(CALLS)]
        elapsed = time.perf_counter() - start
        results = [c.result() for c in calls]
        assert results == [i * i for i in range(CALLS)]
        print(f"{CALLS} calls, results checked, {elapsed:.2f}s, "
              f"{client.connections_opened} connection, {threading.active_count()} OS thread")
        print("proxy:", client.proxy.slow_square(12))
    server.stop()


if __name__ == "__main__":
    dhaga.run(main)
