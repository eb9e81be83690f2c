"""Child script for ``python -m dhaga.monkey monkey_target.py ARGS``: an unchanged program.

It never mentions dhaga in its code path: it sleeps in threads-as-usual style helpers and checks
what the runner patched. Prints one JSON line.
"""

import json
import socket
import ssl
import sys
import time


def main():
    from dhaga import monkey, net

    start = time.perf_counter()
    import dhaga

    workers = [dhaga.spawn(time.sleep, 0.2) for _ in range(100)]  # the patched time.sleep
    for w in workers:
        w.join()
    print(json.dumps({
        "argv": sys.argv[1:],
        "name": __name__,
        "green_socket": socket.socket is net.socket,
        "green_wrap": getattr(ssl.SSLContext.wrap_socket, "__dhaga_green__", False),
        "patched": monkey.is_patched("socket") and monkey.is_patched("time"),
        "threading": monkey.is_patched("threading") and monkey.is_patched("queue"),
        "subprocess": monkey.is_patched("subprocess"), "drivers": monkey.is_patched("drivers"),
        "elapsed": time.perf_counter() - start,
    }))


if __name__ == "__main__":
    main()
