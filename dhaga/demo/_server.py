"""The demo's servers: one runs on an OS thread of its own, with its own scheduler and loop.

This module must not know which server it runs: anything with ``serve_forever()`` and
``stop(timeout)`` that is listening once ``make()`` returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dhaga

__all__ = ["server_in_thread"]


@contextmanager
def server_in_thread(make: Callable[[], Any], name: str) -> Iterator[Any]:
    """Run ``make()``'s server on a new thread; yield it once it listens; stop it there on exit.

    Raises:
        RuntimeError: the server did not start within 30 s.
    """
    ready, handle = threading.Event(), []

    def serve() -> None:
        def main() -> None:
            server = make()
            handle[:] = [server, dhaga.get_scheduler()]
            ready.set()
            server.serve_forever()

        dhaga.run(main)

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError(f"the demo's server ({name}) did not start")
    server, scheduler = handle
    try:
        yield server
    finally:
        # The server belongs to its own thread: stop it there (submit works from any thread).
        scheduler.submit(server.stop, 1).result(30)
        thread.join(30)
