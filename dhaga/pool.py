"""Pools of dhagas: `Pool` bounds how many run at once; `GreenExecutor` replaces `ThreadPoolExecutor`.

How this works
--------------
`Pool` is a `Semaphore` of slots: `spawn` takes one (waiting while the pool is full) and the
dhaga's done callback gives it back, however the dhaga ends. `imap` runs a *feeder* dhaga that
spawns into the pool (so the pool's bound is the backpressure) while the caller collects the
results from a queue.

`GreenExecutor` and its futures live in `dhaga.executor`; this module re-exports them, as
``dhaga.pool`` is their public home.

This module knows the scheduler's spawn API and `dhaga.sync`; it knows nothing about I/O, nor
about `concurrent.futures` (the executor's names are only re-exported).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .errors import Killed, Timeout
from .executor import BrokenThreadPool, GreenExecutor, GreenFuture
from .scheduler import Dhaga, current, spawn
from .sync import Event, Queue, Semaphore

__all__ = ["Pool", "GreenExecutor", "GreenFuture", "BrokenThreadPool"]

T = TypeVar("T")


# ---------------------------------------------------------------------- Pool
class Pool:
    """At most ``size`` dhagas running at once (gevent's ``Pool``).

    Args:
        size: the bound; None means unbounded.
    """

    def __init__(self, size: int | None = None) -> None:
        if size is not None and size < 1:
            raise ValueError("pool size must be at least 1 (or None for no bound)")
        self.size = size
        self._slots = Semaphore(size) if size is not None else None
        self._running: dict[Dhaga, None] = {}  # in spawn order
        self._idle = Event()
        self._spawning = 0  # spawners waiting for a slot
        self._idle.set()
        self._error: Dhaga | None = None

    def __repr__(self) -> str:
        return f"<Pool size={self.size} running={len(self._running)}>"

    def __len__(self) -> int:
        return len(self._running)

    def __contains__(self, d: object) -> bool:
        return d in self._running

    def __iter__(self) -> Iterator[Dhaga]:
        return iter(list(self._running))

    def free_count(self) -> int:
        """How many more dhagas could start now without waiting (``sys.maxsize`` if unbounded)."""
        if self.size is None:
            return sys.maxsize
        return max(0, self.size - len(self._running))

    def full(self) -> bool:
        """True when `spawn` would wait."""
        return self.free_count() == 0

    def wait_available(self, timeout: float | None = None) -> bool:
        """Wait until a slot is free; False if ``timeout`` expired first.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            True once a slot is free (at once for an unbounded pool); False on timeout.
        """
        if self._slots is None:
            return True
        if not self._slots.acquire(timeout=timeout):
            return False
        self._slots.release()
        return True

    def spawn(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Dhaga:
        """Start ``fn(*args, **kw)`` in a new dhaga, first waiting for a free slot (FIFO).

        Args:
            fn: the function to run.
            *args: positional arguments for ``fn``.
            **kw: keyword arguments for ``fn``.

        Returns:
            the new `Dhaga`.
        """
        if self._slots is not None:
            self._spawning += 1  # a slot handed to us keeps the pool from looking idle
            self._idle.clear()
            try:
                self._slots.acquire()
            except BaseException:
                self._spawning -= 1
                self._set_idle_if_empty()
                raise
            self._spawning -= 1
        try:
            d = spawn(fn, *args, **kw)
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            self._set_idle_if_empty()
            raise
        self._running[d] = None
        self._idle.clear()
        d.add_done_callback(self._discard)
        return d

    def _discard(self, d: Dhaga) -> None:
        del self._running[d]
        if self._error is None and d._exc is not None and not isinstance(d._exc, Killed):
            self._error = d
        if self._slots is not None:
            self._slots.release()
        self._set_idle_if_empty()

    def _set_idle_if_empty(self) -> None:
        if not self._running and not self._spawning:
            self._idle.set()

    def apply(self, fn: Callable[..., T], args: Iterable[Any] = (), kwds: dict | None = None) -> T:
        """Run ``fn(*args, **kwds)`` in the pool and return its result.

        Called from a dhaga of this pool, it runs inline (waiting for a slot could deadlock).

        Args:
            fn: the function to run.
            args: its positional arguments.
            kwds: its keyword arguments.

        Returns:
            what ``fn`` returned; its exception is re-raised.
        """
        if current() in self._running:
            return fn(*args, **(kwds or {}))
        return self.spawn(fn, *args, **(kwds or {})).result()

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any]) -> list[T]:
        """``list(map(fn, *iterables))``, each call in the pool; the first failure is raised.

        Args:
            fn: called with one item of each iterable.
            *iterables: the arguments, consumed in step as ``map`` does.

        Returns:
            the results, in input order.
        """
        return list(self.imap(fn, *iterables))

    def imap(self, fn: Callable[..., T], *iterables: Iterable[Any]) -> Iterator[T]:
        """Like `map`, lazily: results come in input order as they are ready.

        Args:
            fn: called with one item of each iterable.
            *iterables: the arguments, consumed in step as ``map`` does.

        Returns:
            an iterator of the results in input order; it raises the first failure.
        """
        return self._imap(fn, zip(*iterables), ordered=True)

    def imap_unordered(self, fn: Callable[..., T], *iterables: Iterable[Any]) -> Iterator[T]:
        """Like `imap`, but results come in the order the calls finish.

        Args:
            fn: called with one item of each iterable.
            *iterables: the arguments, consumed in step as ``map`` does.

        Returns:
            an iterator of the results as the calls finish; it raises the first failure.
        """
        return self._imap(fn, zip(*iterables), ordered=False)

    def _imap(self, fn: Callable[..., T], arg_tuples: Iterator[tuple], ordered: bool) -> Iterator[T]:
        results: Queue[tuple[str, Any, Any]] = Queue()

        def feed() -> None:
            n = 0
            try:
                for args in arg_tuples:
                    d = self.spawn(fn, *args)
                    d.add_done_callback(lambda d, i=n: results.put(("done", i, d)))
                    n += 1
            except Killed:
                raise
            except BaseException as e:  # noqa: BLE001 - the input iterable failed: tell the reader
                results.put(("error", n, e))
            finally:
                results.put(("end", n, None))

        feeder = spawn(feed)
        feeder.name = f"Pool.imap-feeder-{feeder._id}"
        return self._collect(results, feeder, ordered)

    @staticmethod
    def _collect(results: Queue, feeder: Dhaga, ordered: bool) -> Iterator[Any]:
        total, seen, nxt = None, 0, 0
        ready: dict[int, Dhaga] = {}
        try:
            while total is None or seen < total:
                kind, i, obj = results.get()
                if kind == "end":
                    total = i
                elif kind == "error":
                    raise obj
                else:
                    seen += 1
                    if not ordered:
                        yield obj.result()
                        continue
                    ready[i] = obj
                    while nxt in ready:
                        yield ready.pop(nxt).result()
                        nxt += 1
        finally:
            if not feeder.done():
                feeder.kill(block=False)  # stop feeding; calls already started finish

    def join(self, timeout: float | None = None, raise_error: bool = False) -> bool:
        """Wait until no dhaga of the pool runs.

        Args:
            timeout: seconds to wait at most; None waits forever.
            raise_error: re-raise the exception of the first dhaga of the pool that failed.

        Returns:
            True if the pool is empty, False if ``timeout`` expired first.
        """
        empty = self._idle.wait(timeout)
        if raise_error and self._error is not None:
            failed, self._error = self._error, None
            failed.result()
        return empty

    def kill(
        self,
        exception: type[BaseException] | BaseException = Killed,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Kill every dhaga of the pool; with ``block``, wait until they have finished.

        Args:
            exception: the exception class or instance raised in each dhaga; `Killed` by default.
            block: wait until every dhaga of the pool has finished.
            timeout: with ``block``, seconds to wait at most; None waits forever.

        Raises:
            Timeout: ``block`` was set and they did not finish in time.
        """
        for d in list(self._running):
            d.kill(exception, block=False)
        if block and not self._idle.wait(timeout):
            raise Timeout(f"pool not empty {timeout}s after kill", timeout)
