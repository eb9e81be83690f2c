"""The `Dhaga` handle: what `spawn` returns; its result, joining, callbacks and killing.

A `Dhaga` is kept apart from the greenlet that runs it, so that a finished greenlet can run the
next dhaga. It reaches its scheduler through the scheduler object it belongs to and the caller's
through `get_scheduler`; it must not know how the kernel runs, parks or wakes dhagas.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any, Callable, Generator

from ..errors import Killed, Timeout
from .states import DONE, STATE_NAMES, TIMED_OUT, _call_callback, _Waiter, label_of
from .threads import get_scheduler

__all__ = ["Dhaga"]

_get_ident = threading.get_ident
_ContextRun = type(contextvars.copy_context().run)


class Dhaga(_Waiter):
    """A green thread: the handle returned by `spawn`.

    Behaves like a `concurrent.futures.Future` (``done``, ``result``, ``exception``,
    ``add_done_callback``), can be joined, killed, and awaited from a coroutine on its loop.

    Args:
        fn: the function the dhaga runs (a Dhaga is made by `spawn`, never directly).
        *args: positional arguments for ``fn``.
        **kw: keyword arguments for ``fn``.
    """

    __slots__ = (
        "_id", "_name", "_fn", "_args", "_kw", "_ctx", "_gr", "_value", "_exc",
        "_joiners", "_callbacks", "_retrieved", "_reporter", "__weakref__",
    )

    def __init__(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        raise TypeError("use dhaga.spawn() to create a Dhaga")

    # ------------------------------------------------------------------ state
    @property
    def name(self) -> str:
        """The dhaga's name: set by the program, or by default what it runs and a number.

        The default is the function's qualified name and the dhaga's number, such as
        ``Server.handle-12`` (as asyncio's task reprs show their coroutine), fixed the first
        time it is read; a dhaga that finished before it was ever read is ``Dhaga-<number>``.
        """
        name = self._name
        if name is None:
            fn = self._fn
            if fn is None:
                return f"Dhaga-{self._id}"
            if isinstance(fn, _ContextRun) and self._args:  # Scheduler.submit's ctx.run(fn)
                fn = self._args[0]
            name = self._name = f"{label_of(fn)}-{self._id}"
        return name

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value)

    def done(self) -> bool:
        """True when the dhaga has finished (returned, failed or was killed)."""
        return self._state is DONE

    def killed(self) -> bool:
        """True when the dhaga ended by `Killed` (including a kill before it started)."""
        return self._state is DONE and isinstance(self._exc, Killed)

    def __repr__(self) -> str:
        return f"<Dhaga {self.name} {STATE_NAMES[self._state]}>"

    # ------------------------------------------------------------------ waiting
    def _mark_retrieved(self) -> None:
        self._retrieved = True
        if self._reporter is not None:
            self._reporter.cancel()
            self._reporter = None

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the dhaga has finished; callable from any thread.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            True if it finished, False if the timeout expired first.
        """
        self._mark_retrieved()
        if self._state is DONE:
            return True
        sched = get_scheduler()
        waiter = sched.waiter()
        if waiter is self:
            raise RuntimeError("a dhaga cannot join itself")
        owner = self._sched
        local = owner is sched
        ticket = (waiter, waiter._gen)
        if local:
            if self._joiners is None:
                self._joiners = []
            self._joiners.append(ticket)
        else:
            owner.call_threadsafe(self._add_joiner, ticket)
        try:
            return sched.park_timed(waiter, timeout, self) is not TIMED_OUT
        finally:
            if self._state is not DONE:
                if local:
                    self._joiners.remove(ticket)
                else:
                    owner.call_threadsafe(self._remove_joiner, ticket)

    def _add_joiner(self, ticket: tuple[_Waiter, int]) -> None:
        if self._state is DONE:
            self._sched.wake(*ticket)
        elif self._joiners is None:
            self._joiners = [ticket]
        else:
            self._joiners.append(ticket)

    def _remove_joiner(self, ticket: tuple[_Waiter, int]) -> None:
        if self._joiners and ticket in self._joiners:
            self._joiners.remove(ticket)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the dhaga and return its value, or re-raise its exception.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            the value ``fn`` returned.

        Raises:
            Timeout: the timeout expired first.
            Killed: the dhaga was killed.
        """
        if self._state is not DONE and not self.join(timeout):
            raise Timeout(f"{self.name} did not finish within {timeout}s", timeout)
        self._mark_retrieved()
        if self._exc is not None:
            raise self._exc
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the dhaga and return its exception, or None if it returned normally.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            the exception the dhaga ended with (`Killed` if it was killed), or None.

        Raises:
            Timeout: the timeout expired first.
        """
        if self._state is not DONE and not self.join(timeout):
            raise Timeout(f"{self.name} did not finish within {timeout}s", timeout)
        self._mark_retrieved()
        return self._exc

    def add_done_callback(self, fn: Callable[[Dhaga], Any]) -> None:
        """Call ``fn(dhaga)`` when it finishes (at once if it already has).

        Callbacks run on the dhaga's own thread right after it finishes, and must not block.
        Callable from any thread.

        Args:
            fn: called with the finished `Dhaga` as its only argument.
        """
        if self._state is DONE:
            _call_callback(fn, self)
        elif self._sched._thread_id == _get_ident():
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(fn)
        else:
            self._sched.call_threadsafe(self.add_done_callback, fn)

    def remove_done_callback(self, fn: Callable[[Dhaga], Any]) -> int:
        """Remove every registration of ``fn``; return how many were removed.

        Args:
            fn: the callback given to `add_done_callback`.

        Returns:
            how many registrations were removed (0 if none).
        """
        if not self._callbacks:
            return 0
        before = len(self._callbacks)
        self._callbacks = [cb for cb in self._callbacks if cb != fn]
        return before - len(self._callbacks)

    def __await__(self) -> Generator[Any, None, Any]:
        self._mark_retrieved()
        if self._state is not DONE:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()

            def _done(_: Dhaga) -> None:
                if not fut.done():
                    fut.set_result(None)

            if self._sched.loop is loop:
                self.add_done_callback(_done)
            else:
                self.add_done_callback(lambda d: loop.call_soon_threadsafe(_done, d))
            yield from fut.__await__()
        return self.result()

    # ------------------------------------------------------------------ killing
    def kill(
        self,
        exception: type[BaseException] | BaseException = Killed,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Raise ``exception`` inside the dhaga at its blocking point.

        A dhaga not yet started never runs. A dhaga that was already woken (it has a value
        waiting for it) receives the exception at its next blocking point, so nothing handed
        to it is lost.

        Args:
            exception: an exception class or instance; `Killed` by default.
            block: wait until the dhaga has finished.
            timeout: with ``block``, how long to wait.

        Raises:
            Timeout: ``block`` was set and the dhaga did not finish in time.
        """
        exc = exception() if isinstance(exception, type) else exception
        if not self._sched.interrupt(self, exc):
            return  # it had finished, or it never started and now never will
        if block and not self.join(timeout):
            raise Timeout(f"{self.name} did not finish within {timeout}s after kill", timeout)
