"""Waiting on many dhagas: ``joinall``, ``iwait`` and the structured-concurrency ``Group``.

This module builds only on `Dhaga` handles and the scheduler's parking rules.
"""

from __future__ import annotations

import time
from collections import deque
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator

from ._core.parking import Waiting, park, ticket, wake
from ._core.states import DONE
from .errors import Killed, Timeout
from .scheduler import Dhaga, spawn

__all__ = ["joinall", "iwait", "Group"]


def _failed(d: Dhaga) -> bool:
    return d._exc is not None and not isinstance(d._exc, Killed)


def joinall(
    dhagas: Iterable[Dhaga], timeout: float | None = None, raise_error: bool = False
) -> list[Dhaga]:
    """Wait for every dhaga to finish.

    Args:
        dhagas: the dhagas to wait for.
        timeout: seconds to wait at most.
        raise_error: re-raise the first failure as soon as it happens (killed dhagas are not
            failures).

    Returns:
        the dhagas, in the order given.

    Raises:
        Timeout: ``timeout`` seconds passed before all finished.
    """
    dhagas = list(dhagas)
    for d in dhagas:
        d._mark_retrieved()
    if not raise_error:
        deadline = None if timeout is None else time.monotonic() + timeout
        for d in dhagas:
            if d._state is not DONE:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not d.join(left):
                    raise Timeout(f"joinall: not all dhagas finished within {timeout}s", timeout)
        return dhagas
    for d in dhagas:
        if d._state is DONE and _failed(d):
            raise d._exc  # type: ignore[misc]
    pending = [d for d in dhagas if d._state is not DONE]
    if pending:
        mine = ticket()
        left = [len(pending)]

        def _on_done(d: Dhaga) -> None:
            left[0] -= 1
            if left[0] == 0 or _failed(d):
                wake(mine)

        for d in pending:
            d.add_done_callback(_on_done)
        try:
            park(mine, timeout, on=Waiting("joinall", pending))
        finally:
            for d in pending:
                if d._state is not DONE:
                    d.remove_done_callback(_on_done)
        for d in pending:
            if d._state is DONE and _failed(d):
                raise d._exc  # type: ignore[misc]
    return dhagas


def iwait(dhagas: Iterable[Dhaga], timeout: float | None = None) -> Iterator[Dhaga]:
    """Yield the dhagas one by one as they finish (those already finished first).

    Args:
        dhagas: the dhagas to wait for.
        timeout: seconds for the whole iteration; None waits forever.

    Yields:
        each dhaga, once it has finished.

    Raises:
        Timeout: ``timeout`` seconds (for the whole iteration) passed before all finished.
    """
    dhagas = list(dhagas)
    deadline = None if timeout is None else time.monotonic() + timeout
    finished: deque[Dhaga] = deque()
    parked: list[Any] = [None]  # the consumer's ticket while it waits

    def _on_done(d: Dhaga) -> None:
        finished.append(d)
        if parked[0] is not None:
            wake(parked[0])

    pending = 0
    for d in dhagas:
        d._mark_retrieved()
        if d.done():
            finished.append(d)
        else:
            pending += 1
            d.add_done_callback(_on_done)
    try:
        remaining = len(dhagas)
        while remaining:
            if not finished:
                parked[0] = mine = ticket()
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    park(mine, left, on=Waiting("iwait", dhagas))
                except Timeout as e:
                    raise Timeout(f"iwait: {remaining} dhagas still running after {timeout}s", timeout) from e
                finally:
                    parked[0] = None
                continue
            remaining -= 1
            yield finished.popleft()
    finally:
        for d in dhagas:
            if not d.done():
                d.remove_done_callback(_on_done)


class Group:
    """Structured concurrency: dhagas spawned in the block are all finished when it ends.

    ::

        with dhaga.Group() as g:
            g.spawn(fetch, url1)
            g.spawn(fetch, url2)
        # both are done here

    Leaving the block waits for every member. The first member to fail kills the others and
    its exception is raised from the block. If the block itself raises (or its dhaga is
    killed), the members are killed and waited for, and that exception propagates.
    """

    def __init__(self) -> None:
        self._members: dict[Dhaga, None] = {}
        self._failure: BaseException | None = None
        self._waiter: Any = None

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Dhaga]:
        return iter(list(self._members))

    @property
    def failure(self) -> BaseException | None:
        """The first member failure, if any."""
        return self._failure

    def spawn(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Dhaga:
        """Start ``fn`` in a new dhaga that belongs to this group.

        Args:
            fn: the function to run.
            *args: positional arguments for ``fn``.
            **kw: keyword arguments for ``fn``.

        Returns:
            the new member's `Dhaga`.
        """
        d = spawn(fn, *args, **kw)
        d._retrieved = True  # the group reports its failure
        self._members[d] = None
        d.add_done_callback(self._on_done)
        return d

    def _on_done(self, d: Dhaga) -> None:
        self._members.pop(d, None)
        if _failed(d) and self._failure is None:
            self._failure = d._exc
            self.kill(block=False)
        if not self._members and self._waiter is not None:
            wake(self._waiter)

    def kill(self, exception: type[BaseException] | BaseException = Killed, block: bool = True,
             timeout: float | None = None) -> None:
        """Kill every member; with ``block``, wait until they have all finished.

        Args:
            exception: the exception class or instance raised in each member; `Killed` by default.
            block: wait until every member has finished.
            timeout: with ``block``, seconds to wait at most; None waits forever.
        """
        for d in list(self._members):
            d.kill(exception, block=False)
        if block:
            self.join(timeout)

    def join(self, timeout: float | None = None, raise_error: bool = False) -> bool:
        """Wait until every member has finished.

        Args:
            timeout: seconds to wait at most; None waits forever.
            raise_error: re-raise the first member's failure, if any, once all have finished.

        Returns:
            True if all finished, False if ``timeout`` expired first.

        Raises:
            Exception: with ``raise_error``, the first failure of a member.
        """
        if self._members:
            self._waiter = mine = ticket()
            try:
                park(mine, timeout, on=self)
            except Timeout:
                if self._members:
                    return False
            finally:
                self._waiter = None
        if raise_error and self._failure is not None:
            raise self._failure
        return True

    def __enter__(self) -> Group:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is not None:
            self.kill(block=False)
        try:
            self.join()
        except BaseException:
            # Killed (or timed out) while waiting: the members must not outlive the block.
            self.kill(block=False)
            self._join_uninterruptibly()
            raise
        if exc is None and self._failure is not None:
            raise self._failure
        return False

    def _join_uninterruptibly(self) -> None:
        while self._members:
            try:
                self.join()
            except BaseException:  # noqa: BLE001 - a second kill cannot orphan members
                self.kill(block=False)
