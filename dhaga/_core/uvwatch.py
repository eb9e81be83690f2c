"""Seeing that nothing is left to wake a uvloop, for `Deadlock`.

How this works
--------------
asyncio's loop asks a Python selector to wait, so the kernel sees the moment it would sleep
forever (``Scheduler._select``). uvloop waits inside libuv, in C, with no Python hook, and keeps
its timers and handles in fields Python cannot read. libuv's public C API answers instead, and
uvloop's extension module exports it (uvloop hands out its ``uv_loop_t`` for such
integrations: ``uvloop.loop.libuv_get_loop_t_ptr``); ctypes calls it.

While the thread's top level is parked, a loop timer runs a check: 1 ms after the first park,
then at intervals that double up to ``LAST_INTERVAL`` (1 s). So a program that deadlocks soon
is told within milliseconds, one that deadlocks after a long run within a second, and a busy
loop pays nothing per iteration (a check per interval, once the intervals have grown). The
timer is made once per check, not per park: when a park ends it stays armed, and the next park
of the thread uses it; when it fires with nothing parked, it is not armed again (until the
next park). The watch is kept on the scheduler (``_idle_watch``), holding it only weakly. A check runs in a timer callback, which is as good a moment as the poll itself: it
concludes only when nothing at all is pending, and then nothing can make anything pending
again.

The check: ``uv_backend_timeout`` is -1 only when libuv would wait with no timeout (no timer,
no ready callback, no pending or closing handle, no stop requested; its 0 for descriptor changes
not yet handed to epoll just postpones the verdict to the next check); uvloop's ready queue
is empty (a callback another thread posted just before it ended); no libuv request is in flight;
and every handle of the loop is walked (``uv_walk``). An active handle of any kind that could
end the poll (a stream, a process, a libuv signal watcher, a file watcher...) means "a wake is
possible". Three kinds are not wakes in themselves: check and idle handles run only when the
loop iterates anyway, and an async handle is sent from another thread (the thread check in
`dhaga._core.deadlock` decides on those). A poll handle (``add_reader``/``add_writer``) is a
possible wake unless it is uvloop's own signal pipe (signal handlers are checked separately) or
a dhaga fd watcher nobody waits on (the same ``_dhaga_can_wake`` as on asyncio). uvloop's
objects are recognised by identity and type through ``gc.get_referents``, never by position;
anything not recognised counts as a possible wake.

Any failure here means "no deadlock" (logged once, and checking stops for that scheduler), and so
does a libuv other than 1.x: the cost of being wrong that way is a hang, as without this
module, never a false `Deadlock`.

It reads the loop and runs one timer on it; it must not know about any primitive.
"""

from __future__ import annotations

import _socket
import collections
import ctypes
import gc
import logging
import sys
import weakref
from typing import Any

from .deadlock import diagnose
from .states import PARKED

__all__ = ["FIRST_INTERVAL", "LAST_INTERVAL", "IdleWatch", "watch_idle"]

log = logging.getLogger("dhaga")

#: Seconds after a top-level park begins that its loop is first checked; each check that finds
#: a possible wake doubles the interval, up to `LAST_INTERVAL`.
FIRST_INTERVAL = 0.001
LAST_INTERVAL = 1.0
_OFF = float("inf")  # the interval of a watch whose check failed

# libuv's uv_handle_type values (uv.h) that matter here.
_UV_ASYNC, _UV_CHECK, _UV_IDLE, _UV_POLL = 1, 2, 6, 8
_UV_NAMES = {3: "file watcher", 4: "file poll", 7: "pipe", 9: "prepare handle", 10: "process",
             11: "stream", 12: "TCP handle", 13: "timer", 14: "TTY", 15: "UDP handle",
             16: "signal watcher"}  # fmt: skip


class _LoopHead(ctypes.Structure):
    """The public head of libuv's ``uv_loop_t`` (uv.h), up to its request count."""

    _fields_ = [("data", ctypes.c_void_p), ("active_handles", ctypes.c_uint),
                ("handle_queue", ctypes.c_void_p * 2), ("active_reqs", ctypes.c_uint)]


class _HandleHead(ctypes.Structure):
    """The public head of libuv's ``uv_handle_t``: its data, loop and type."""

    _fields_ = [("data", ctypes.c_void_p), ("loop", ctypes.c_void_p), ("type", ctypes.c_int)]


_WALK_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class _Libuv:
    """The libuv functions uvloop's extension exports, and uvloop's loop type."""

    def __init__(self) -> None:
        import uvloop.loop

        if uvloop.loop.libuv_get_version() >> 16 != 1:
            raise RuntimeError("not libuv 1.x: its structures may differ from those read here")
        lib = ctypes.PyDLL(uvloop.loop.__file__)  # already loaded: this only looks symbols up
        vp, ci = ctypes.c_void_p, ctypes.c_int
        for name, res, args in (
            ("uv_backend_timeout", ci, [vp]),
            ("uv_walk", None, [vp, _WALK_CB, vp]),
            ("uv_is_active", ci, [vp]),
            ("uv_fileno", ci, [vp, ctypes.POINTER(ci)]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
            setattr(self, name, fn)
        capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        capsule_pointer.restype, capsule_pointer.argtypes = vp, [ctypes.py_object, ctypes.c_char_p]
        self.loop_ptr = lambda loop: capsule_pointer(uvloop.loop.libuv_get_loop_t_ptr(loop), None)
        self.loop_type = uvloop.loop.Loop


_uv: _Libuv | None = None


class _LoopView:
    """What stays true of one uvloop for its life: its ``uv_loop_t``, ready queue, poll dict."""

    def __init__(self, loop: Any, uv: _Libuv) -> None:
        self.loop = loop
        self.ptr = uv.loop_ptr(loop)
        deques = [r for r in gc.get_referents(loop) if isinstance(r, collections.deque)]
        self.ready = deques[0] if len(deques) == 1 else None  # None: cannot be seen
        self.polls: dict[int, Any] | None = None  # uvloop's poll objects by fd, once found


class IdleWatch:
    """The checks on one scheduler's uvloop while its top level is parked (see above)."""

    __slots__ = ("sched", "uv", "view", "interval", "timer")

    def __init__(self, sched: Any, uv: _Libuv, view: _LoopView) -> None:
        self.sched = weakref.ref(sched)  # the armed timer must not keep a scheduler alive
        self.uv = uv
        self.view = view
        self.interval = FIRST_INTERVAL
        self.timer: Any = None

    def _check(self) -> None:
        self.timer = None
        sched = self.sched()
        if sched is None or sched._top._state is not PARKED:
            return  # not armed again until the next park
        try:
            if not sched._runq:
                exc = diagnose(sched, self.wake_source)
                if exc is not None:
                    sched._unpark(sched._top, None, exc)
                    return
        except Exception:  # noqa: BLE001 - say "no deadlock", and stop looking
            log.exception("dhaga: the deadlock check on uvloop failed; it is off")
            self.interval = _OFF
            return
        self.interval = min(self.interval * 2, LAST_INTERVAL)
        self.timer = sched.loop.call_later(self.interval, self._check)

    # ------------------------------------------------------------------ what may wake
    def wake_source(self) -> str | None:
        """What on the loop may still end its poll, or None (see the module docstring)."""
        uv = self.uv
        view = self.view
        ptr = view.ptr
        if uv.uv_backend_timeout(ptr) != -1:
            return "a loop callback or timer"
        if view.ready is None:
            return "a loop whose ready callbacks cannot be seen"
        if view.ready:
            return "a loop callback"
        if _LoopHead.from_address(ptr).active_reqs:
            return "a libuv request in flight"
        own = self._own_and_polls()
        polls = view.polls or {}
        for fd, poll in list(polls.items()):  # first, as a busy loop has one that can wake
            if fd not in own and _poll_can_wake(poll):
                return f"fd {fd} is watched"
        found: list[tuple[int, int]] = []

        @_WALK_CB
        def visit(handle: int, arg: int) -> None:
            if uv.uv_is_active(handle):
                fd = ctypes.c_int(-1)
                if uv.uv_fileno(handle, ctypes.byref(fd)) != 0:
                    fd.value = -1
                found.append((_HandleHead.from_address(handle).type, fd.value))

        uv.uv_walk(ptr, visit, None)
        for kind, fd in found:
            if kind in (_UV_ASYNC, _UV_CHECK, _UV_IDLE):
                continue
            if kind != _UV_POLL:
                return f"a libuv {_UV_NAMES.get(kind, f'handle of type {kind}')} is active"
            if fd in own:
                continue  # uvloop's signal pipe: signal handlers are checked on their own
            if fd not in polls:  # not uvloop's, or not recognised
                return f"fd {fd} is watched"
        return None

    def _own_and_polls(self) -> set[int]:
        """The fds of uvloop's signal pipe (remade on every run); finds its poll dict once."""
        view = self.view
        own = set()
        for ref in gc.get_referents(view.loop):
            if isinstance(ref, _socket.socket):
                own.add(ref.fileno())
            elif view.polls is None and isinstance(ref, dict) and ref:
                if all(_is_uvloop(obj, "UVPoll") for obj in ref.values()):
                    view.polls = ref
        own.discard(-1)
        return own


def _is_uvloop(obj: Any, name: str) -> bool:
    t = type(obj)
    return t.__name__ == name and t.__module__.startswith("uvloop")


def _poll_can_wake(poll: Any) -> bool:
    """False only for a dhaga fd watcher that nobody waits on."""
    owners = []
    for handle in gc.get_referents(poll):
        if _is_uvloop(handle, "Handle"):
            for ref in gc.get_referents(handle):
                if callable(ref) and not _is_uvloop(ref, "Loop"):
                    owners.append(getattr(ref, "__self__", None))
    if not owners:
        return True
    for owner in owners:
        can_wake = getattr(owner, "_dhaga_can_wake", None)
        if can_wake is None or can_wake():
            return True
    return False


def watch_idle(sched: Any) -> None:
    """``sched``'s top level parks: make sure a check is coming, if its loop is uvloop's."""
    try:
        watch = sched._idle_watch  # kept on the scheduler: this runs at every top-level park
    except AttributeError:
        watch = sched._idle_watch = _new_watch(sched)
    if watch is not None and watch.timer is None and watch.interval != _OFF:
        watch.timer = watch.view.loop.call_later(watch.interval, watch._check)


def _new_watch(sched: Any) -> IdleWatch | None:
    if "uvloop" not in sys.modules:
        return None
    try:
        loop = sched.loop
        uv = _libuv()
        if not isinstance(loop, uv.loop_type):
            return None
        return IdleWatch(sched, uv, _LoopView(loop, uv))
    except Exception:  # noqa: BLE001 - without it, a deadlock hangs as it always did
        log.debug("dhaga: no deadlock detection on this uvloop", exc_info=True)
        return None


def _libuv() -> _Libuv:
    global _uv
    if _uv is None:
        _uv = _Libuv()
    return _uv
