"""Green ``subprocess`` waits for `dhaga.monkey`: waiting for a child parks the dhaga.

What changes (``subprocess.Popen`` stays the standard class, so ``isinstance`` and subclasses
made before patching keep working): ``Popen._wait`` (behind ``wait()``, ``run()``, ``call()``)
waits on a pidfd (Linux 5.3+; elsewhere a short green poll) instead of ``waitpid``;
``Popen.communicate`` always takes the selector path, never the one-pipe blocking ``read()``;
``subprocess._PopenSelector`` is the green selector. Outside a dhaga where parking is
impossible (see `must_block_thread`), the originals run.

This module builds the replacements and hands them to the setter `dhaga.monkey` passes in; it
decides nothing about when to patch.
"""

from __future__ import annotations

import os
import subprocess as _subprocess
import time as _time
import types
from typing import Any, Callable

from .._io.fdwait import wait_readable
from ..errors import Timeout
from .green_select import GreenSelector, must_block_thread

__all__ = ["patch_subprocess"]

_std_wait = _subprocess.Popen._wait
_std_communicate = _subprocess.Popen.communicate
_FOREVER = 10.0 * 365 * 24 * 3600  # a finite "no timeout": communicate then uses the selector
_monotonic = _time.monotonic


def _green_wait(self: _subprocess.Popen, timeout: float | None) -> int:
    if self.returncode is not None or must_block_thread():
        return _std_wait(self, timeout)  # type: ignore[no-any-return]
    try:
        pidfd = os.pidfd_open(self.pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):  # no pidfd (old kernel, other OS) or already reaped
        return _poll_wait(self, timeout)
    try:
        wait_readable(pidfd, timeout)
    except Timeout:
        raise _subprocess.TimeoutExpired(self.args, timeout) from None
    finally:
        os.close(pidfd)
    return _std_wait(self, None)  # type: ignore[no-any-return]  # exited: reaps at once


def _poll_wait(self: _subprocess.Popen, timeout: float | None) -> int:
    from ..scheduler import sleep

    deadline = None if timeout is None else _monotonic() + timeout
    delay = 0.001
    while self.poll() is None:
        if deadline is not None and _monotonic() >= deadline:
            raise _subprocess.TimeoutExpired(self.args, timeout)
        sleep(delay)
        delay = min(delay * 2, 0.05)
    return self.returncode


def _green_communicate(self: _subprocess.Popen, input: Any = None,  # noqa: A002 - stdlib name
                       timeout: float | None = None) -> tuple[Any, Any]:
    if timeout is None and not must_block_thread():
        pipes = sum(p is not None for p in (self.stdin, self.stdout, self.stderr))
        if pipes:  # any finite timeout makes the standard code take its selector path
            return _std_communicate(self, input, _FOREVER)  # type: ignore[no-any-return]
    return _std_communicate(self, input, timeout)  # type: ignore[no-any-return]


def patch_subprocess(set_: Callable[[types.ModuleType | type, str, Any], None]) -> None:
    """Swap ``Popen``'s waits and the selector ``communicate`` uses for green ones."""
    set_(_subprocess, "_PopenSelector", GreenSelector)
    set_(_subprocess.Popen, "_wait", _green_wait)
    set_(_subprocess.Popen, "communicate", _green_communicate)
