"""Child script: unchanged redis-py against a real redis-server, made concurrent by patch_all().

N dhagas each SET a key, block 0.2 s server-side in BLPOP on an empty list, and GET the key
back. Prints one JSON line: elapsed, correct answers, how many connections the pool had to
open (one per request in flight at once), and the most OS threads seen.
"""

from dhaga import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import redis  # noqa: E402

import dhaga  # noqa: E402

PORT = int(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 500


def main():
    r = redis.Redis(host="127.0.0.1", port=PORT, socket_timeout=30, max_connections=N)
    threads = [threading.active_count()]

    def one(i):
        r.set(f"key{i}", f"value{i}")
        r.execute_command("BLPOP", f"empty{i}", "0.2")  # the server holds us 0.2 s
        threads.append(threading.active_count())
        return r.get(f"key{i}") == f"value{i}".encode()

    start = time.perf_counter()
    ok = sum(d.result(60) for d in [dhaga.spawn(one, i) for i in range(N)])
    elapsed = time.perf_counter() - start
    pool = r.connection_pool
    opened = len(pool._available_connections) + len(pool._in_use_connections)
    r.close()

    # A BlockingConnectionPool waits on a threading.Condition for a free connection: green
    # with threading patched (the default), so 60 dhagas share 10 connections in waves.
    blocking = redis.Redis(connection_pool=redis.BlockingConnectionPool(
        host="127.0.0.1", port=PORT, max_connections=10, timeout=30))
    start = time.perf_counter()
    waited = [dhaga.spawn(blocking.execute_command, "BLPOP", f"none{i}", "0.2")
              for i in range(60)]
    blocking_ok = sum(1 for d in waited if d.result(60) is None)
    blocking_elapsed = time.perf_counter() - start
    blocking.close()
    print(json.dumps({"elapsed": elapsed, "ok": ok, "connections": opened, "threads": max(threads),
                      "blocking_ok": blocking_ok, "blocking_elapsed": blocking_elapsed}))


if __name__ == "__main__":
    main()
