"""Seeing uvloop about to sleep with nothing left to wake it, for `Deadlock`.

How this works
--------------
asyncio's loop asks a Python selector to wait, so the kernel sees the moment it would sleep
forever (``Scheduler._select``). uvloop waits inside libuv, in C, with no Python hook, and keeps
its ready queue, timers and handles in fields Python cannot read. libuv's public C API answers
both questions instead, and uvloop's extension module exports it (uvloop hands out its
``uv_loop_t`` for exactly such integrations: ``uvloop.loop.libuv_get_loop_t_ptr``):

- the moment: while the thread's top level is parked, a *prepare* handle is started on the
  loop; libuv runs prepare callbacks once per iteration, right before it polls;
- whether the poll could ever end: ``uv_backend_timeout`` is -1 only when libuv would wait with
  no timeout (no timer, no ready callback, no pending or closing handle, no stop requested);
  then every handle the loop has is walked (``uv_walk``) and every request in flight counted.

An active handle of any kind that could end the poll (a stream, a process, a libuv signal
watcher, a file watcher...) or a request in flight means "a wake is possible". Four kinds are
not wakes in themselves: prepare, check and idle handles run only when the loop iterates
anyway, and an async handle is sent from another thread (the thread check in
`dhaga._core.deadlock` decides on those). A poll handle (``add_reader``/``add_writer``) is a
possible wake unless it is uvloop's own signal pipe (signal handlers are checked separately) or
a dhaga fd watcher nobody waits on (the same ``_dhaga_can_wake`` as on asyncio); uvloop's
objects are recognised by identity and type through ``gc.get_referents``, never by position,
and anything not recognised counts as a possible wake.

A loop that goes idle again and again (a busy server with no timer) is checked fully at most
every ``CHECK_INTERVAL``: an idle moment sooner after a check that found a possible wake arms a
one-off timer to the end of the interval instead, and the check runs when it fires.

libuv's public timeout is also 0 while descriptor changes wait to be handed to epoll, although
the poll would then sleep for good; so when it is 0 and nothing else makes the loop come back at
once, one no-op callback makes this poll not sleep, and the next iteration looks again.

The handle lives for one top-level park: it is closed when the park ends, so no loop is ever
closed with a handle of ours on it. Any failure here means "no deadlock" (the check is logged
and stops for that park), and so does a libuv other than 1.x: the cost of being wrong that way
is a hang, as without this module, never a false `Deadlock`.

It reads the loop and starts one handle of its own; it must not know about any primitive.
"""

from __future__ import annotations

import _socket
import _thread
import ctypes
import gc
import logging
import sys
import time
import weakref
from typing import Any

from .deadlock import diagnose
from .states import PARKED

__all__ = ["IdleWatch", "watch_idle"]

log = logging.getLogger("dhaga")
_monotonic = time.monotonic

#: A loop that keeps going idle (a busy server without timers) is checked at most this often:
#: an idle moment within this long after a check that found a possible wake arms a timer for
#: the rest of it instead, so a deadlock is seen at most this much later.
CHECK_INTERVAL = 0.01

# libuv's uv_handle_type values (uv.h) that matter here.
_UV_ASYNC, _UV_CHECK, _UV_IDLE, _UV_POLL, _UV_PREPARE = 1, 2, 6, 8, 9
_UV_NAMES = {3: "file watcher", 4: "file poll", 7: "pipe", 10: "process", 11: "stream",
             12: "TCP handle", 13: "timer", 14: "TTY", 15: "UDP handle", 16: "signal watcher"}


class _LoopHead(ctypes.Structure):
    """The public head of libuv's ``uv_loop_t`` (uv.h), up to its stop flag."""

    _fields_ = [("data", ctypes.c_void_p), ("active_handles", ctypes.c_uint),
                ("handle_queue", ctypes.c_void_p * 2), ("active_reqs", ctypes.c_uint),
                ("internal_fields", ctypes.c_void_p), ("stop_flag", ctypes.c_uint)]


class _HandleHead(ctypes.Structure):
    """The public head of libuv's ``uv_handle_t``: its data, loop and type."""

    _fields_ = [("data", ctypes.c_void_p), ("loop", ctypes.c_void_p), ("type", ctypes.c_int)]


_PREPARE_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_WALK_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_CLOSE_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _Libuv:
    """The libuv functions uvloop's extension exports, and uvloop's types."""

    def __init__(self) -> None:
        import uvloop.loop

        if uvloop.loop.libuv_get_version() >> 16 != 1:
            raise RuntimeError("not libuv 1.x: its structures may differ from those read here")
        lib = ctypes.PyDLL(uvloop.loop.__file__)  # already loaded: this only looks symbols up
        vp, ci = ctypes.c_void_p, ctypes.c_int
        for name, res, args in (
            ("uv_handle_size", ctypes.c_size_t, [ci]),
            ("uv_prepare_init", ci, [vp, vp]),
            ("uv_prepare_start", ci, [vp, _PREPARE_CB]),
            ("uv_prepare_stop", ci, [vp]),
            ("uv_unref", None, [vp]),
            ("uv_close", None, [vp, _CLOSE_CB]),
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
        self.prepare_size = self.uv_handle_size(_UV_PREPARE)


_uv: _Libuv | None = None
_watches: dict[int, IdleWatch] = {}  # handle address -> its watch, while started
_closing: dict[int, Any] = {}  # handle address -> buffer, until libuv has let the handle go
_free: list[Any] = []  # buffers of closed handles, for the next park
_views: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> _LoopView


def _libuv() -> _Libuv:
    global _uv
    if _uv is None:
        _uv = _Libuv()
    return _uv


def _nothing() -> None:
    pass


@_PREPARE_CB
def _before_poll(handle: int) -> None:
    # A C callback cannot raise: a Ctrl-C that lands here is delivered again, after it.
    try:
        watch = _watches.get(handle)
        if watch is not None:
            watch.before_poll()
    except KeyboardInterrupt:
        _thread.interrupt_main()
    except BaseException:  # noqa: BLE001 - say "no deadlock", once, and stop looking
        log.exception("dhaga: the deadlock check on uvloop failed; it is off for this wait")
        if _uv is not None:
            _uv.uv_prepare_stop(handle)


@_CLOSE_CB
def _closed(handle: int) -> None:
    buf = _closing.pop(handle, None)
    if buf is not None:
        _free.append(buf)


class _LoopView:
    """What stays true of one uvloop for its life: its ``uv_loop_t``, idle handle, poll dict."""

    def __init__(self, loop: Any, uv: _Libuv) -> None:
        self.ptr = uv.loop_ptr(loop)
        self.idle: int | None = None  # the address of uvloop's idle handle (0: not found)
        self.polls: dict[int, Any] | None = None  # uvloop's poll objects by fd, once found


class IdleWatch:
    """A prepare handle on ``sched``'s uvloop while its top level is parked (see above)."""

    __slots__ = ("sched", "uv", "view", "buf", "handle", "own", "next_check")

    def __init__(self, sched: Any, uv: _Libuv, view: _LoopView) -> None:
        self.sched = sched
        self.uv = uv
        self.view = view
        self.own: list[Any] | None = None  # uvloop's own signal pipe's sockets, once found
        self.next_check = 0.0  # no full check before this (monotonic seconds)
        self.buf = _free.pop() if _free else ctypes.create_string_buffer(uv.prepare_size)
        self.handle = ctypes.addressof(self.buf)
        if uv.uv_prepare_init(view.ptr, self.handle) != 0:
            raise OSError("uv_prepare_init failed")
        uv.uv_unref(self.handle)  # it must not keep the loop alive
        _watches[self.handle] = self
        uv.uv_prepare_start(self.handle, _before_poll)

    def before_poll(self) -> None:
        """The prepare callback: libuv is about to poll."""
        sched = self.sched
        if sched._top._state is not PARKED or sched._runq:
            return
        timeout = self.uv.uv_backend_timeout(self.view.ptr)
        if timeout != -1:
            if timeout == 0:
                self._unsure()
            return  # libuv will wake by itself (a timer, a callback, a stop)
        now = _monotonic()
        if now < self.next_check:  # looked a moment ago: look again then, not now
            self.sched.loop.call_later(self.next_check - now, _nothing)
            return
        exc = diagnose(sched, self.wake_source)
        if exc is not None:
            sched._unpark(sched._top, None, exc)
        else:
            self.next_check = now + CHECK_INTERVAL

    def _unsure(self) -> None:
        """The public timeout was 0: make sure libuv polls without sleeping this time.

        ``uv_backend_timeout`` also answers 0 while descriptor changes wait to be handed to
        epoll, although the poll itself would then sleep for good; the next iteration's
        answer is exact. When uvloop has callbacks ready (its idle handle is active) or a stop
        is requested, that next iteration comes anyway; otherwise one no-op callback brings it.
        """
        view = self.view
        if view.idle is None:
            view.idle = self._find_handle("UVIdle", _UV_IDLE)
        if view.idle and self.uv.uv_is_active(view.idle):
            return
        if _LoopHead.from_address(view.ptr).stop_flag:
            return
        self.sched.loop.call_soon(_nothing)

    def _find_handle(self, name: str, kind: int) -> int:
        """The address of the libuv handle of uvloop's own ``name`` object (0: not found)."""
        objs = {id(r) for r in gc.get_referents(self.sched.loop) if _is_uvloop(r, name)}
        found = []

        @_WALK_CB
        def visit(handle: int, arg: int) -> None:
            head = _HandleHead.from_address(handle)
            if head.type == kind and head.data in objs:
                found.append(handle)

        self.uv.uv_walk(self.view.ptr, visit, None)
        return found[0] if len(found) == 1 else 0

    def close(self) -> None:
        """Close the handle; libuv lets it go at the loop's next iteration, or its close."""
        del _watches[self.handle]
        _closing[self.handle] = self.buf
        self.uv.uv_close(self.handle, _closed)
        self.sched = None

    # ------------------------------------------------------------------ what may wake
    def wake_source(self) -> str | None:
        """What on the loop may still end its poll, or None (see the module docstring)."""
        uv = self.uv
        ptr = self.view.ptr
        if uv.uv_backend_timeout(ptr) != -1:
            return "a loop callback or timer"
        if _LoopHead.from_address(ptr).active_reqs:
            return "a libuv request in flight"
        if self.own is None or self.view.polls is None:
            self._find_polls()
        # uvloop remakes its signal pipe on every run, and closes the old one (fileno -1).
        own = {s.fileno() for s in self.own}  # type: ignore[union-attr]
        polls = self.view.polls or {}
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
            if kind in (_UV_ASYNC, _UV_CHECK, _UV_IDLE, _UV_PREPARE):
                continue
            if kind != _UV_POLL:
                return f"a libuv {_UV_NAMES.get(kind, f'handle of type {kind}')} is active"
            if fd in own:
                continue  # uvloop's signal pipe: signal handlers are checked on their own
            if fd not in polls:  # not uvloop's, or not recognised
                return f"fd {fd} is watched"
        return None

    def _find_polls(self) -> None:
        """uvloop's dict of poll objects, and its signal pipe, from the loop's referents."""
        view = self.view
        socks = []
        for ref in gc.get_referents(self.sched.loop):
            if isinstance(ref, _socket.socket):
                socks.append(ref)
            elif view.polls is None and isinstance(ref, dict) and ref:
                if all(_is_uvloop(obj, "UVPoll") for obj in ref.values()):
                    view.polls = ref
        self.own = socks


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


def watch_idle(sched: Any) -> IdleWatch | None:
    """An `IdleWatch` for ``sched`` if its loop is uvloop's; None otherwise (or if it fails)."""
    if "uvloop" not in sys.modules:
        return None
    try:
        loop = sched.loop
        view = _views.get(loop)
        if view is None:
            uv = _libuv()
            if not isinstance(loop, uv.loop_type):
                return None
            view = _views[loop] = _LoopView(loop, uv)
        return IdleWatch(sched, _uv, view)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - without it, a deadlock hangs as it always did
        log.debug("dhaga: no deadlock detection on this uvloop", exc_info=True)
        return None
