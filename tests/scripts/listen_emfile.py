"""Child script: an `Acceptor` out of descriptors for real (RLIMIT_NOFILE lowered, fd table full).

Two episodes of EMFILE, separated by a clock jump past ``episode_gap``; between them the table
is freed, then filled again. Prints one JSON line: the warnings logged, the failures counted,
the episodes, and the connections accepted.
"""

import json
import logging
import os
import resource
import socket

import dhaga
from dhaga._io import listen

records = []


class Keep(logging.Handler):
    def emit(self, record):
        records.append(record)


logger = logging.getLogger("dhaga.server")
logger.addHandler(Keep())
logger.setLevel(logging.DEBUG)
clock = [1000.0]
listen.monotonic = lambda: clock[0]  # the episode rule reads this clock


def fill():
    """Open /dev/null until the table is full; return the descriptors."""
    fds = []
    while True:
        try:
            fds.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            return fds


def wait_until(cond, what):
    for _ in range(2000):
        if cond():
            return
        dhaga.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def episode(acc, accepted, clients, fds):
    """Make one pending connection fail to be accepted for a while, then let it in."""
    os.close(fds.pop())  # room for the client's own descriptor
    clients.append(socket.create_connection(acc.sock.getsockname()))  # done in the backlog
    start = acc.accept_errors
    wait_until(lambda: acc.accept_errors >= start + 20, "20 failed accepts")
    for fd in fds:
        os.close(fd)
    fds.clear()
    wait_until(lambda: len(accepted) == len(clients), "the connection accepted")


def main():
    lst = listen.bind(("127.0.0.1", 0))
    accepted, clients = [], []
    acc = listen.Acceptor(lst, lambda s, a: accepted.append(s), backoff=0.005, name="probe")
    acc.start()
    dhaga.sleep(0)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 32, hard))
    try:
        episode(acc, accepted, clients, fill())
        first = {"warnings": sum(r.levelno == logging.WARNING for r in records),
                 "errors": acc.accept_errors, "episodes": acc.episodes}
        clock[0] += acc.episode_gap + 1  # quiet for longer than the gap: the next is new
        episode(acc, accepted, clients, fill())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    result = {
        "first": first,
        "warnings": sum(r.levelno == logging.WARNING for r in records),
        "emfile_in_message": all("Too many open files" in r.getMessage()
                                 for r in records if r.levelno == logging.WARNING),
        "errors": acc.accept_errors,
        "episodes": acc.episodes,
        "accepted": len(accepted),
    }
    for s in accepted + clients:
        s.close()
    acc.stop()
    print(json.dumps(result))


dhaga.run(main)
