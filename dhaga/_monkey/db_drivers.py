"""Database drivers for `dhaga.monkey`: psycopg2/psycopg 3 waits that park, cancellation.

How this works
--------------
Both psycopg generations talk to libpq in non-blocking mode and ask a Python function to wait
for the socket; dhaga supplies that function, so a query parks only its dhaga.

- psycopg2: `_psycopg2_wait` is installed with ``psycopg2.extensions.set_wait_callback``.
  ``psycopg2.connect`` is wrapped so that host names are resolved by dhaga's resolver (off the
  loop) and passed to libpq as ``hostaddr``: libpq would otherwise resolve inside its connect
  call, blocking the thread.
- psycopg 3: ``psycopg.waiting.wait`` and ``wait_conn`` (whichever the module picked, the C
  ``wait_c`` included) become `_psycopg_wait`/`_psycopg_wait_conn`; its blocking
  ``Connection.cancel`` (what it falls back to with a libpq older than 17) runs in a real thread. psycopg 3 resolves names in
  Python (``socket.getaddrinfo``), which the dns patch already makes green.
- Interruption: when a dhaga is killed or its ``dhaga.timeout()`` fires while it waits for a
  query, the wait asks the server to cancel the query (``PQcancel``, on a new short
  connection, from a real thread for psycopg2), reads the cancelled result off the connection, and re-raises the interruption:
  the connection is left idle (psycopg 3; inside a transaction, in the failed state) or closed
  (psycopg2 closes a connection whose wait callback raised). psycopg 3 does the cancel itself
  for ``KeyboardInterrupt``; dhaga adds `Killed` and `TimeoutInterrupt` to that list.
- PyMySQL: a query interrupted mid-way is stopped with ``KILL QUERY`` from a second
  connection (PyMySQL itself closes the interrupted one).

Each patch runs when its module is first imported (or at once, if it already is; see
`dhaga._monkey.on_import`). This module knows the drivers' wait and cancel protocols; it must
not know how fd waits are implemented.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
import types
import weakref
from typing import Any, Callable

from .._io.fdwait import notify_close, wait_any, wait_fd
from ..errors import Killed, TimeoutInterrupt
from ..scheduler import get_scheduler
from .on_import import when_imported

__all__ = ["patch_psycopg", "patch_pymysql"]

log = logging.getLogger("dhaga.monkey")
_monotonic = time.monotonic
_CANCEL_GRACE = 5.0  # seconds a cancelled query gets to end before its connection is closed
_INTERRUPTS = (Killed, TimeoutInterrupt)

Setter = Callable[[Any, str, Any], None]


# ---------------------------------------------------------------------- fd readiness
def _wait_ready(fd: int, want: int, timeout: float | None) -> int:
    """Park until ``fd`` is ready for ``want`` (1 read, 2 write, 3 either); return what is.

    Where parking is impossible (a plain thread that never used dhaga, a coroutine on the
    loop), it blocks the thread in the real ``select``, as the driver itself would.
    """
    from .green_select import must_block_thread

    if must_block_thread():
        return _select_ready(fd, want, timeout)
    if want == 1:
        return 1 if wait_fd(fd, False, timeout, keep=False) else 0
    if want == 2:
        return 2 if wait_fd(fd, True, timeout, keep=False) else 0
    if not wait_any((fd,), (fd,), timeout):
        return 0
    return _select_ready(fd, want, 0)


#: The real ``select.select``, handed over by `patch_psycopg` (dhaga.monkey keeps the originals;
#: this module does not import it, so the two form no import cycle).
_real_select: Callable[..., Any] | None = None


def _select_ready(fd: int, want: int, timeout: float | None) -> int:
    real = _real_select
    if real is None:  # patched through a path that did not hand it over: select is unpatched
        import select

        real = select.select
    r, w, _ = real([fd] if want & 1 else [], [fd] if want & 2 else [], [], timeout)
    return (1 if r else 0) | (2 if w else 0)


# ---------------------------------------------------------------------- psycopg 3
def _psycopg_wait(gen: Any, fileno: int, interval: float = 0.0,
                  timeout: float | None = None) -> Any:
    """``psycopg.waiting.wait``, parking the dhaga (``interval`` is not needed: no polling)."""
    from psycopg import errors

    deadline = None if timeout is None else _monotonic() + timeout
    try:
        s = next(gen)
        while True:
            left = None if deadline is None else max(0.0, deadline - _monotonic())
            s = gen.send(_wait_ready(fileno, s, left))
            if deadline is not None and _monotonic() >= deadline:
                raise errors._WaitTimeout("wait timeout expired")
    except StopIteration as stop:
        return stop.value


def _psycopg_wait_conn(gen: Any, interval: float = 0.0, timeout: float | None = None) -> Any:
    """``psycopg.waiting.wait_conn`` (the file descriptor may change while connecting)."""
    from psycopg import errors

    deadline = None if timeout is None else _monotonic() + timeout
    try:
        fileno, s = next(gen)
        while True:
            left = None if deadline is None else max(0.0, deadline - _monotonic())
            fileno, s = gen.send(_wait_ready(fileno, s, left))
            if deadline is not None and _monotonic() >= deadline:
                raise errors._WaitTimeout("wait timeout expired")
    except StopIteration as stop:
        return stop.value


def _patch_psycopg3(set_: Setter) -> Callable[[types.ModuleType], None]:
    def hook(_: types.ModuleType) -> None:
        import psycopg.connection
        import psycopg.waiting

        set_(psycopg.waiting, "wait", _psycopg_wait)
        set_(psycopg.waiting, "wait_conn", _psycopg_wait_conn)
        std_cancel = psycopg.Connection.cancel
        if not getattr(std_cancel, "__dhaga_green__", False):

            def cancel(self: Any) -> None:
                """Blocking ``PQcancel`` (libpq < 17, no ``cancel_safe``), in a real thread."""
                from ..threads import to_thread
                from .green_select import must_block_thread

                if must_block_thread():
                    std_cancel(self)
                else:
                    to_thread(std_cancel, self, timeout=_CANCEL_GRACE)

            cancel.__dhaga_green__ = True  # type: ignore[attr-defined]
            cancel.__doc__ = std_cancel.__doc__
            set_(psycopg.Connection, "cancel", cancel)
        interrupted = tuple(psycopg.connection._INTERRUPTED)
        if not all(exc in interrupted for exc in _INTERRUPTS):
            # Connection.wait cancels the query on the server for these, then re-raises.
            set_(psycopg.connection, "_INTERRUPTED", interrupted + _INTERRUPTS)

    return hook


# ---------------------------------------------------------------------- psycopg2
# A connection's socket stays registered with the loop between its waits (three round trips
# per pooled query: BEGIN, the query, the reset's ROLLBACK), saving two epoll_ctl calls per
# wait. It is registered through a duplicate descriptor that dhaga owns: psycopg2 closes its
# own without telling anyone, and a registration left on a closed (then reused) number would
# confuse the loop; the duplicate is unregistered and closed when the connection object goes
# away, or when its socket changes (libpq trying the next address while connecting).
_kept: weakref.WeakKeyDictionary[Any, tuple[int, int, Any]] = weakref.WeakKeyDictionary()


def _release_dup(dup: int, sched: Any) -> None:
    """Unregister and close ``dup`` on its scheduler's thread (the loop's own, if it runs)."""
    if sched._thread_id != threading.get_ident() and not sched.loop.is_closed():
        try:
            sched.call_threadsafe(_release_dup, dup, sched)
            return
        except RuntimeError:  # the loop closed meanwhile: nothing is registered any more
            pass
    try:
        notify_close(dup)
    finally:
        os.close(dup)


def _kept_fd(conn: Any) -> int:
    """The loop-registered duplicate of ``conn``'s socket (made on first use)."""
    fd = conn.fileno()
    entry = _kept.get(conn)
    if entry is not None:
        if entry[0] == fd:
            return entry[1]
        entry[2].detach()
        _release_dup(entry[1], get_scheduler())
    dup = os.dup(fd)
    _kept[conn] = (fd, dup, weakref.finalize(conn, _release_dup, dup, get_scheduler()))
    return dup


def _psycopg2_wait(conn: Any, timeout: float | None = None) -> None:
    """The psycopg2 wait callback: park until the connection's operation completes."""
    import psycopg2.extensions as ext

    from .green_select import must_block_thread

    if not must_block_thread() and conn.status != ext.STATUS_SETUP:
        _psycopg2_wait_kept(conn)
        return
    fd = conn.fileno()
    try:
        while True:
            state = conn.poll()
            if state == ext.POLL_OK:
                return
            if state == ext.POLL_READ:
                _wait_ready(fd, 1, None)
            elif state == ext.POLL_WRITE:
                _wait_ready(fd, 2, None)
            else:  # pragma: no cover - psycopg2 documents no other state
                raise conn.OperationalError(f"bad state from poll: {state}")
    except BaseException as exc:
        if isinstance(exc, Exception):
            raise
        _psycopg2_cancel(conn)
        raise


def _psycopg2_wait_kept(conn: Any) -> None:
    """`_psycopg2_wait` in a dhaga, on a connected connection: the registration is kept."""
    import psycopg2.extensions as ext

    fd = _kept_fd(conn)
    try:
        while True:
            state = conn.poll()
            if state == ext.POLL_OK:
                return
            if state == ext.POLL_READ:
                wait_fd(fd, False, None)
            elif state == ext.POLL_WRITE:
                wait_fd(fd, True, None)
            else:  # pragma: no cover - psycopg2 documents no other state
                raise conn.OperationalError(f"bad state from poll: {state}")
    except BaseException as exc:
        if isinstance(exc, Exception):
            raise
        _psycopg2_cancel(conn)
        raise


def _psycopg2_cancel(conn: Any) -> None:
    """Cancel the query running on ``conn`` on the server and read its end (bounded)."""
    import psycopg2
    import psycopg2.extensions as ext

    from ..threads import to_thread
    from .green_select import must_block_thread

    if conn.closed or conn.status == ext.STATUS_SETUP:
        return  # interrupted while connecting: nothing runs on the server yet
    try:
        # PQcancel connects to the server and waits for it, in C: in a real thread (psycopg2
        # allows cancel() from any thread), so a slow or unreachable server stalls no dhaga.
        if must_block_thread():
            conn.cancel()
        else:
            to_thread(conn.cancel, timeout=_CANCEL_GRACE)
        fd = conn.fileno()
        deadline = _monotonic() + _CANCEL_GRACE
        while True:
            try:
                state = conn.poll()
            except psycopg2.Error:
                return  # the QueryCanceled result (or the query's own error): it has ended
            if state == ext.POLL_OK:
                return
            left = deadline - _monotonic()
            if left <= 0 or not _wait_ready(fd, 2 if state == ext.POLL_WRITE else 1, left):
                log.warning("query not ended %.0fs after its cancel: closing the connection",
                            _CANCEL_GRACE)
                conn.close()
                return
    except BaseException as exc:  # interrupted again, or the cancel failed: unknown state
        log.warning("cancelling the interrupted query failed (%s): closing the connection",
                    type(exc).__name__)
        conn.close()
        if not isinstance(exc, Exception):
            raise


def _green_hostaddr(params: dict[str, Any]) -> dict[str, Any]:
    """Add ``hostaddr`` for host names, resolved by dhaga's resolver (off the loop)."""
    host = params.get("host") or os.environ.get("PGHOST")
    if not host or params.get("hostaddr") or os.environ.get("PGHOSTADDR"):
        return params
    hosts = str(host).split(",")
    if any(h.startswith("/") or not h for h in hosts):
        return params  # unix socket directories: nothing to resolve
    port = str(params.get("port") or 5432).split(",")[0]
    addrs = []
    for h in hosts:
        try:
            ipaddress.ip_address(h)
            addrs.append(h)
            continue
        except ValueError:
            pass
        import socket

        from .._io.dns import getaddrinfo

        infos = getaddrinfo(h, int(port), 0, socket.SOCK_STREAM)
        addrs.append(infos[0][4][0])
    return dict(params, host=host, hostaddr=",".join(addrs))


def _patch_psycopg2(set_: Setter) -> Callable[[types.ModuleType], None]:
    def hook(_: types.ModuleType) -> None:
        import psycopg2
        import psycopg2.extensions as ext

        ext.set_wait_callback(_psycopg2_wait)
        std_connect = psycopg2.connect
        if getattr(std_connect, "__dhaga_green__", False):
            return

        def connect(dsn: str | None = None, connection_factory: Any = None,
                    cursor_factory: Any = None, **kwargs: Any) -> Any:
            from .green_select import must_block_thread

            if not must_block_thread():
                params = ext.parse_dsn(dsn or "")
                params.update({k: v for k, v in kwargs.items() if v is not None})
                resolved = _green_hostaddr(params)
                if resolved is not params:
                    dsn, kwargs = ext.make_dsn(**resolved), {}
            return std_connect(dsn, connection_factory=connection_factory,
                               cursor_factory=cursor_factory, **kwargs)

        connect.__doc__ = std_connect.__doc__
        connect.__dhaga_green__ = True  # type: ignore[attr-defined]
        set_(psycopg2, "connect", connect)

    return hook


def patch_psycopg(set_: Setter, real_select: Callable[..., Any] | None = None) -> None:
    """Patch psycopg2 and psycopg 3 now, or when each is first imported.

    Args:
        set_: how to replace an attribute (dhaga.monkey's, which remembers the original).
        real_select: the unpatched ``select.select``, for a wait that must block the thread.
    """
    global _real_select
    if real_select is not None:
        _real_select = real_select
    when_imported("psycopg2", _patch_psycopg2(set_))
    when_imported("psycopg", _patch_psycopg3(set_))


# ---------------------------------------------------------------------- PyMySQL
def _pymysql_kill_query(conn: Any) -> None:
    """``KILL QUERY`` the statement ``conn`` runs, from a short second connection."""
    import pymysql

    other = pymysql.connect(host=conn.host, port=conn.port, user=conn.user,
                            password=conn.password, unix_socket=conn.unix_socket,
                            connect_timeout=_CANCEL_GRACE, ssl_disabled=True)
    try:
        with other.cursor() as cur:
            cur.execute(f"KILL QUERY {int(conn.server_thread_id[0])}")
    finally:
        other.close()


def _patch_pymysql(set_: Setter) -> Callable[[types.ModuleType], None]:
    def hook(module: types.ModuleType) -> None:
        std_query = module.Connection.query
        if getattr(std_query, "__dhaga_green__", False):
            return

        def query(self: Any, sql: Any, unbuffered: bool = False) -> Any:
            try:
                return std_query(self, sql, unbuffered)
            except BaseException as exc:
                if isinstance(exc, Exception) or not self.server_thread_id:
                    raise
                # Interrupted mid-query (kill, timeout): PyMySQL closed the socket, but the
                # server runs the statement on until it next looks at the client: stop it.
                self._force_close()
                try:
                    _pymysql_kill_query(self)
                except Exception as kill_exc:  # noqa: BLE001 - the interruption wins
                    if getattr(kill_exc, "args", (None,))[0] != 1094:  # it had already ended
                        log.warning("KILL QUERY after an interruption failed: %r", kill_exc)
                raise

        query.__dhaga_green__ = True  # type: ignore[attr-defined]
        query.__doc__ = std_query.__doc__
        set_(module.Connection, "query", query)

    return hook


def patch_pymysql(set_: Setter) -> None:
    """Make PyMySQL stop a query on the server when its dhaga is interrupted."""
    when_imported("pymysql.connections", _patch_pymysql(set_))
