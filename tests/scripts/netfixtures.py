"""Fixtures shared by the networking test modules: a check that no file descriptor leaked.

Knows the scheduler only to close the test's event loop before counting descriptors.
"""

from __future__ import annotations

import gc
import os

import pytest

from dhaga import scheduler


def _warm_up_uvloop() -> None:
    """libuv makes one process-wide pipe (for signals) with its first loop; make it now."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the test extra
        return
    uvloop.new_event_loop().close()


_warm_up_uvloop()


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_fd_leak():
    """Fail the test if it left a file descriptor open (after its event loop is closed)."""
    scheduler.reset_scheduler()
    before = _open_fds()
    yield
    scheduler.reset_scheduler()  # the loop's own descriptors (epoll, self-pipe) go with it
    gc.collect()
    leaked = sorted(_open_fds() - before, key=int)
    details = []
    for fd in leaked:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, or one closed meanwhile
        if target.endswith((".py", ".pyc")):
            continue  # another thread reading source (an import, a traceback): not ours
        details.append(f"{fd} -> {target}")
    assert not details, f"file descriptors leaked: {details}"
