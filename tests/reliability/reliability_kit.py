"""Helpers of the reliability suite: raw green connections, fd and memory baselines.

Knows dhaga's sockets and scheduler, nothing of the servers under test.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from contextlib import contextmanager

from dhaga import net
from dhaga.testing import settle


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def send_and_read_until_closed(address, data: bytes, timeout: float = 10,
                               limit: int = 1 << 20) -> bytes:
    """Send ``data`` (as much as the peer takes), return what came back before it closed.

    Raises:
        AssertionError: the peer neither closed nor stopped answering within ``timeout``.
    """
    sock = net.create_connection(address, timeout=timeout)
    try:
        try:
            sock.sendall(data)
        except OSError:
            pass  # closed on us mid-send: what it said so far still counts
        got = bytearray()
        while len(got) < limit:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(
                    f"still open after {timeout}s; got {bytes(got[:200])!r}") from None
            if not chunk:
                break
            got += chunk
        return bytes(got)
    finally:
        sock.close()


@contextmanager
def baseline(fd_slack: int = 0, memory_slack: int = 256 * 1024):
    """Check that fds and traced Python memory come back to what they were.

    Yields a dict that gets ``peak`` (the traced peak, bytes) on exit.
    """
    settle()
    gc.collect()
    fds = open_fds()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out: dict = {}
        yield out
        settle()
        gc.collect()
        now, peak = tracemalloc.get_traced_memory()
        out["peak"] = peak - before
        assert now - before <= memory_slack, f"{now - before} bytes still held"
    finally:
        tracemalloc.stop()
    assert open_fds() <= fds + fd_slack, f"fds: {fds} before, {open_fds()} after"
