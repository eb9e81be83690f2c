"""Helpers shared by the dhaga.mq tests: sockets closed at the end, bounded waits, fd counts."""

from __future__ import annotations

import os
import time

import pytest

import dhaga
from dhaga import mq
from dhaga.scheduler import format_stacks
from dhaga.testing import settle


@pytest.fixture
def make():
    """Make dhaga.mq sockets that are closed (linger 0) when the test ends."""
    made = []

    def _make(kind, **options):
        sock = mq.Socket(kind, **options)
        made.append(sock)
        return sock

    yield _make
    for sock in made:
        sock.close(linger=0)
    try:
        settle()
    except RuntimeError as exc:  # say which dhagas keep running
        raise RuntimeError(f"{exc}\n{format_stacks()}") from None


_names = iter(range(10**6))


def ep() -> str:
    """A fresh inproc endpoint."""
    return f"inproc://t{next(_names)}"


def pair(make, a_kind, b_kind, a_opts=None, b_opts=None):
    """A socket bound to a fresh inproc endpoint and one connected to it."""
    a = make(a_kind, **(a_opts or {}))
    b = make(b_kind, **(b_opts or {}))
    b.connect(a.bind(ep()))
    return a, b


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def until(predicate, timeout: float = 5.0, step: float = 0.005) -> None:
    """Let dhagas run until ``predicate()`` is true; fail after ``timeout`` seconds.

    For conditions no event announces (a peer process connecting, a log line); each round
    yields to the loop, so I/O keeps moving.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        dhaga.sleep(step)


def recv_all(sock, n: int, timeout: float = 5.0) -> list[list[bytes]]:
    return [sock.recv_multipart(timeout=timeout) for _ in range(n)]
