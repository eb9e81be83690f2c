"""Monkey-patching: swap the standard library's blocking functions for green ones, and back.

What `patch_all` replaces by default, like gevent (module attributes; the originals are kept,
see `original`):

==========  ==========================================================================
Not patched: ``os`` and file I/O (use `dhaga.to_thread`), ``os.system``/``os.waitpid``,
``signal``, and modules' ``from x import y`` references that existed before patching
(`patch_all` warns about those it finds). This module only swaps attributes and remembers the
originals; it must not know how the green replacements work.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from typing import Any, Callable

__all__ = [
    "patch_all",
    "patch_socket",
    "patch_dns",
    "patch_time",
    "patch_select",
    "patch_selectors",
    "patch_ssl",
    "patch_threading",
    "patch_queue",
    "patch_subprocess",
    "patch_psycopg",
    "patch_drivers",
    "is_patched",
    "original",
    "MonkeyPatchWarning",
]


class MonkeyPatchWarning(RuntimeWarning):
    """Patching happened too late for some module: parts of it may still block the thread."""


_MISSING = object()
_originals: dict[tuple[str, str], Any] = {}  # (module name, attribute) -> what it was
_patched: set[str] = set()

#: Libraries whose objects made before patching (pools, sessions, open sockets) stay blocking.
_WATCHED_LIBRARIES = ("requests", "urllib3", "http.client", "urllib.request", "redis",
                      "httpx", "httpcore", "pymysql", "psycopg2", "pika", "kombu", "socketserver")
#: Modules that hold original objects on purpose (or are fixed up by the patches themselves).
_EXEMPT_PACKAGES = ("dhaga", "asyncio", "tornado", "concurrent", "uvloop", "selectors", "socket",
                    "select", "time", "ssl", "threading", "queue", "subprocess", "gevent",
                    "greenlet", "importlib", "encodings", "typing", "pytest", "_pytest", "pluggy")
_EXEMPT_DOTTED = tuple(p + "." for p in _EXEMPT_PACKAGES)
#: Patched modules whose originals are held everywhere on purpose (locks made at import time
#: by the standard library and dhaga itself); not reported as stale references.
_SHARED_ORIGINALS = ("threading", "queue", "subprocess", "subprocess.Popen")


def _exempt(name: str) -> bool:
    return name in _EXEMPT_PACKAGES or name.startswith(_EXEMPT_DOTTED) or (
        name.startswith("_") and name != "__main__")


def _owner_name(owner: Any) -> str:
    if isinstance(owner, type):  # a class: "subprocess.Popen", as `original` takes it
        return f"{owner.__module__}.{owner.__qualname__}"
    return owner.__name__  # type: ignore[no-any-return]


def _set(module: Any, attr: str, value: Any) -> None:
    key = (_owner_name(module), attr)
    if key not in _originals:
        _originals[key] = getattr(module, attr, _MISSING)
    setattr(module, attr, value)


def _remove(module: Any, attr: str) -> None:
    key = (_owner_name(module), attr)
    if key not in _originals:
        _originals[key] = getattr(module, attr, _MISSING)
    if hasattr(module, attr):
        delattr(module, attr)


def original(module_name: str, attr: str) -> Any:
    """The object ``module_name.attr`` held before dhaga patched it (the current one if never).

    Args:
        module_name: the module's name, such as ``"socket"`` or ``"time"``.
        attr: the attribute's name, such as ``"sleep"``.

    Returns:
        the unpatched object.

    Raises:
        AttributeError: the module never had that attribute.
        ImportError: there is no such module.
    """
    value = _originals.get((module_name, attr), _MISSING)
    if value is not _MISSING:
        return value
    if (module_name, attr) in _originals:
        raise AttributeError(f"{module_name}.{attr} did not exist before patching")
    path = module_name.split(".")
    for i in range(len(path), 0, -1):  # "ssl.SSLContext": a module, then attributes
        try:
            obj = importlib.import_module(".".join(path[:i]))
        except ImportError:
            continue
        for name in path[i:]:
            obj = getattr(obj, name)
        return getattr(obj, attr)
    raise ImportError(f"no module named {module_name!r}")


def is_patched(name: str) -> bool:
    """True when the patch ``name`` ("socket", "dns", "time", "select", ...) was applied.

    Args:
        name: a patch's name, as in `patch_all`'s arguments.

    Returns:
        whether that patch is in place.
    """
    return name in _patched


def _green_only_in_dhagas(green: Callable[..., Any], std: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``green`` so that where parking is impossible the original runs instead."""
    from ._monkey.green_select import must_block_thread

    def call(*args: Any, **kw: Any) -> Any:
        if must_block_thread():
            return std(*args, **kw)
        return green(*args, **kw)

    call.__name__ = getattr(std, "__name__", "call")
    call.__doc__ = getattr(std, "__doc__", None)
    call.__wrapped__ = green  # type: ignore[attr-defined]
    return call


# ---------------------------------------------------------------------- the patches
def patch_socket() -> None:
    """Make `socket.socket` and its constructors green (`dhaga.net`)."""
    import socket

    from . import net

    for name, value in (("socket", net.socket), ("create_connection", net.create_connection),
                        ("socketpair", net.socketpair), ("fromfd", net.fromfd)):
        _set(socket, name, value)
    _patched.add("socket")


def patch_dns() -> None:
    """Resolve names without blocking the loop (the libc resolver in a worker thread)."""
    import socket

    from ._io import dns as _dns

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
                 "getnameinfo", "getfqdn"):
        std = original("socket", name)
        _set(socket, name, _green_only_in_dhagas(getattr(_dns, name), std))
    _patched.add("dns")


def patch_time() -> None:
    """Make `time.sleep` park the dhaga."""
    import time

    from .scheduler import sleep as green_sleep

    std_sleep = original("time", "sleep")

    def sleep(secs: float) -> None:
        if secs < 0:
            raise ValueError("sleep length must be non-negative")
        green_sleep(secs)

    _set(time, "sleep", _green_only_in_dhagas(sleep, std_sleep))
    _patched.add("time")


def patch_select() -> None:
    """Green `select.select` and `select.poll`; remove epoll/devpoll/kqueue (they cannot be)."""
    import select

    from ._monkey import green_select

    _set(select, "select", green_select.select)
    _set(select, "poll", green_select.poll)
    for name in ("epoll", "devpoll", "kqueue", "kevent"):
        if hasattr(select, name):
            _remove(select, name)
    _patched.add("select")


def patch_selectors() -> None:
    """Point `selectors`' default (and select/poll) selectors at a green one.

    asyncio's own loops keep the real selectors: its module sees a snapshot of the original
    `selectors` module, so event loops made after patching still poll for real.
    """
    import asyncio.selector_events as selector_events
    import selectors

    from ._monkey.green_select import GreenSelector

    if not isinstance(selector_events.selectors, _Snapshot):
        snapshot = _Snapshot("selectors")
        snapshot.__dict__.update(selectors.__dict__)
        _set(selector_events, "selectors", snapshot)
    for name in ("DefaultSelector", "SelectSelector", "PollSelector"):
        _set(selectors, name, GreenSelector)
    for name in ("EpollSelector", "DevpollSelector", "KqueueSelector"):
        if hasattr(selectors, name):
            _remove(selectors, name)
    _patched.add("selectors")


class _Snapshot(types.ModuleType):
    """A frozen copy of a module's namespace, for code that must keep the originals."""


def patch_ssl() -> None:
    """Make ``SSLContext.wrap_socket`` build green TLS sockets over green sockets.

    The `ssl.SSLContext` class itself is kept (no subclass, no replacement), so contexts made
    before patching work, and nothing can recurse between two context classes.
    """
    import ssl

    from . import net
    from ._io.tls import SSLSocket

    std_wrap = original("ssl.SSLContext", "wrap_socket")

    def wrap_socket(self: ssl.SSLContext, sock: Any, server_side: bool = False,
                    do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                    server_hostname: str | None = None, session: Any = None) -> Any:
        if isinstance(sock, net.socket):
            return SSLSocket._create(
                sock=sock, server_side=server_side, do_handshake_on_connect=do_handshake_on_connect,
                suppress_ragged_eofs=suppress_ragged_eofs, server_hostname=server_hostname,
                context=self, session=session)
        return std_wrap(self, sock, server_side, do_handshake_on_connect, suppress_ragged_eofs,
                        server_hostname, session)

    wrap_socket.__dhaga_green__ = True  # type: ignore[attr-defined]
    wrap_socket.__doc__ = std_wrap.__doc__
    key = ("ssl.SSLContext", "wrap_socket")
    _originals.setdefault(key, std_wrap)
    ssl.SSLContext.wrap_socket = wrap_socket  # type: ignore[method-assign]
    _set(ssl, "create_connection", net.create_connection)
    _patched.add("ssl")


def patch_threading() -> None:
    """Make `threading`'s primitives and ``Thread`` dhaga-backed (see ``dhaga._monkey.green_threading``)."""
    from ._monkey import green_threading

    green_threading.patch_threading(_set)
    _patched.add("threading")


def patch_queue() -> None:
    """Make `queue`'s queues dhaga-backed (`dhaga.sync`)."""
    from ._monkey import green_threading

    green_threading.patch_queue(_set)
    _patched.add("queue")


def patch_subprocess() -> None:
    """Make waiting for a child process (``wait``, ``run``, ``communicate``) park the dhaga."""
    from ._monkey import green_subprocess

    green_subprocess.patch_subprocess(_set)
    _patched.add("subprocess")


def patch_psycopg() -> None:
    """Make psycopg2 and psycopg 3 cooperative, now or as soon as they are imported.

    psycopg2 gets a wait callback, psycopg 3 green waits (with or without its C speed-ups);
    both cancel the query on the server when the dhaga is killed or times out. For programs
    that patch nothing else; `patch_all` does it too.
    """
    from ._monkey import db_drivers

    db_drivers.patch_psycopg(_set, original("select", "select"))
    _patched.add("psycopg")


def patch_drivers() -> None:
    """`patch_psycopg`; PyMySQL's interrupted queries killed on the server; Django's
    connections reused across requests (``CONN_MAX_AGE``)."""
    from ._monkey import db_drivers, django_orm

    patch_psycopg()
    db_drivers.patch_pymysql(_set)
    django_orm.patch_django()
    _patched.add("drivers")


# ---------------------------------------------------------------------- late patching
def _stale_references() -> dict[str, list[str]]:
    """Modules holding, under some name, an original object that the patches replace."""
    targets: dict[int, str] = {}
    for (mod, attr), value in _originals.items():
        if mod in _SHARED_ORIGINALS:
            continue  # the stdlib itself holds _thread.allocate_lock & co.: not a mistake
        if value is not _MISSING and callable(value):
            targets[id(value)] = f"{mod}.{attr}"
    found: dict[str, list[str]] = {}
    for name, module in list(sys.modules.items()):
        if module is None or _exempt(name):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            what = targets.get(id(value))
            if what is not None and not isinstance(value, types.ModuleType):
                found.setdefault(name, []).append(f"{attr} (= original {what})")
    return found


def _warn_late(already_imported: list[str]) -> None:
    messages = []
    libs = [m for m in _WATCHED_LIBRARIES if m in already_imported]
    if libs:
        messages.append(
            f"{', '.join(libs)} imported before dhaga.monkey.patch_all(): connections, pools or "
            f"sessions they made before patching keep blocking sockets")
    for module, refs in sorted(_stale_references().items()):
        messages.append(f"module {module} holds {', '.join(refs)} from before patching: "
                        f"those calls still block the thread")
    if messages:
        warnings.warn("; ".join(messages) + ". Patch first: call patch_all() before other "
                      "imports, or run `python -m dhaga.monkey script.py`.",
                      MonkeyPatchWarning, stacklevel=3)


def patch_all(
    socket: bool = True,
    dns: bool = True,
    time: bool = True,
    select: bool = True,
    ssl: bool = True,
    threading: bool = True,
    queue: bool | None = None,
    subprocess: bool = True,
    drivers: bool = True,
    warn: bool = True,
) -> None:
    """Apply the patches chosen (all of them by default, as gevent's ``patch_all``).

    Call it first thing, before importing the libraries that should become cooperative.

    Args:
        socket: `patch_socket`: green ``socket.socket`` and its constructors.
        dns: `patch_dns`: name resolution that does not block the loop.
        time: `patch_time`: ``time.sleep`` parks the dhaga.
        select: patches both ``select`` and ``selectors``.
        ssl: `patch_ssl`: TLS over green sockets.
        threading: `patch_threading`: green locks, conditions, events, semaphores, ``Thread``
            and ``local``; ``False`` keeps them real (then a library lock held across green I/O
            blocks the whole thread).
        queue: defaults to the value of ``threading``.
        subprocess: waiting for a child parks the dhaga.
        drivers: psycopg2/psycopg 3 waits and Django's connections (`patch_drivers`).
        warn: warn (`MonkeyPatchWarning`) when libraries were imported too early.
    """
    already = [m for m in _WATCHED_LIBRARIES if m in sys.modules] if warn else []
    if socket:
        patch_socket()
    if dns:
        patch_dns()
    if time:
        patch_time()
    if select:
        patch_select()
        patch_selectors()
    if ssl:
        patch_ssl()
    if threading:
        patch_threading()
    if queue if queue is not None else threading:
        patch_queue()
    if subprocess:
        patch_subprocess()
    if drivers:
        patch_drivers()
    if warn:
        _warn_late(already)


# ---------------------------------------------------------------------- python -m dhaga.monkey
def main(argv: list[str] | None = None) -> int:
    """``python -m dhaga.monkey [--no-threading] script.py [args]`` or ``... -m module [args]``.

    Patches as `patch_all` does by default (threading included); ``--no-threading`` keeps
    threading and queue real. ``--threading`` is accepted and does nothing (it was the opt-in).
    """
    import runpy

    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m dhaga.monkey [--no-threading] (script.py | -m module) [args...]"
    threading = True
    while argv and argv[0].startswith("--"):
        opt = argv.pop(0)
        if opt == "--threading":
            threading = True
        elif opt == "--no-threading":
            threading = False
        elif opt in ("--help",):
            print(usage)
            return 0
        else:
            print(f"unknown option {opt}\n{usage}", file=sys.stderr)
            return 2
    if not argv:
        print(usage, file=sys.stderr)
        return 2
    patch_all(threading=threading)
    if argv[0] == "-m" and len(argv) > 1:
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    # Run through the real `dhaga.monkey`, so `is_patched`/`original` see these patches.
    from dhaga import monkey as _monkey

    sys.exit(_monkey.main())
