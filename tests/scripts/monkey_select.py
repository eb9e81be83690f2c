"""Child script: select.select, select.poll, selectors and time.sleep made green by patch_all().

N dhagas each wait on their own socket with one of the patched calls; the script checks that
all of them were waiting at once (one OS thread), then wakes them. Also checks that asyncio's
own loop still works (it keeps the real selectors). Prints one JSON line.
"""

from dhaga import monkey

monkey.patch_all()

import asyncio  # noqa: E402
import json  # noqa: E402
import select  # noqa: E402
import selectors  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import dhaga  # noqa: E402

N = 50
waiting = [0]
peak = [0]


def enter():
    waiting[0] += 1
    peak[0] = max(peak[0], waiting[0])


def with_select(sock):
    enter()
    r, _, _ = select.select([sock], [], [], 10)
    waiting[0] -= 1
    return r == [sock] and sock.recv(10) == b"go"


def with_poll(sock):
    p = select.poll()
    p.register(sock, select.POLLIN)
    enter()
    events = p.poll(10_000)
    waiting[0] -= 1
    return events == [(sock.fileno(), select.POLLIN)] and sock.recv(10) == b"go"


def with_selector(sock):
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ, "data")
        enter()
        events = sel.select(10)
        waiting[0] -= 1
        return [(k.fileobj, k.data, m) for k, m in events] == [(sock, "data", selectors.EVENT_READ)] \
            and sock.recv(10) == b"go"


def with_sleep(_sock):
    enter()
    time.sleep(0.2)
    waiting[0] -= 1
    return True


def main():
    out = {}
    for name, fn in [("select", with_select), ("poll", with_poll), ("selectors", with_selector),
                     ("time.sleep", with_sleep)]:
        pairs = [socket.socketpair() for _ in range(N)]
        peak[0] = 0
        waiters = [dhaga.spawn(fn, a) for a, _b in pairs]
        while waiting[0] < N and not all(w.done() for w in waiters):
            dhaga.sleep(0.001)
        both_waiting = peak[0]
        for _a, b in pairs:
            b.send(b"go")
        ok = sum(w.result(10) for w in waiters)
        out[name] = {"peak": both_waiting, "ok": ok}
        for a, b in pairs:
            a.close()
            b.close()
    # timeouts keep their meaning
    a, b = socket.socketpair()
    out["select_timeout"] = select.select([a], [], [], 0.01) == ([], [], [])
    p = select.poll()
    p.register(a, select.POLLIN)
    out["poll_timeout"] = p.poll(10) == []
    a.close()
    b.close()
    out["epoll_removed"] = not hasattr(select, "epoll") and monkey.original("select", "epoll") is not None
    out["asyncio_ok"] = asyncio.run(asyncio.sleep(0.01, result="fine")) == "fine"
    out["asyncio_selector"] = type(asyncio.new_event_loop()._selector).__name__
    out["threads"] = threading.active_count()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
