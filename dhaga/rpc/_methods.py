"""The handler table of one msgpack-rpc endpoint: method names to functions, and error objects.

This module must not know about connections, sockets or the wire format.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

__all__ = ["Methods", "format_error", "neovim_error"]

F = TypeVar("F", bound=Callable[..., Any])


def format_error(exc: Exception) -> Any:
    """The default error object for a failed handler: ``[type name, message]``.

    Args:
        exc: the exception the handler raised.

    Returns:
        ``[type(exc).__name__, str(exc)]``.
    """
    return [type(exc).__name__, str(exc)]


def neovim_error(exc: Exception) -> Any:
    """Neovim's error convention, ``[0, "Type: message"]`` (0: an exception).

    Neovim (0.7 at least) shows any other error object as "unknown error"; pass this as
    ``format_error`` to endpoints that Neovim calls.

    Args:
        exc: the exception the handler raised.

    Returns:
        ``[0, "<type name>: <message>"]``.
    """
    return [0, f"{type(exc).__name__}: {exc}"]


class Methods:
    """The handlers one endpoint offers, by method name (a Server's or a Client's).

    Args:
        format_error: turns a handler's exception into the error object sent to the caller.
    """

    def __init__(self, format_error: Callable[[Exception], Any] = format_error) -> None:
        self._fns: dict[str, Callable[..., Any]] = {}
        self.format_error = format_error

    def __contains__(self, name: object) -> bool:
        return name in self._fns

    def names(self) -> list[str]:
        """The registered method names, sorted."""
        return sorted(self._fns)

    def get(self, name: str) -> Callable[..., Any] | None:
        """The handler for ``name``, or None.

        Args:
            name: a method name.

        Returns:
            its handler, or None when nothing is registered under it.
        """
        return self._fns.get(name)

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """Handle requests and notifications named ``name`` with ``fn(*params)``.

        Args:
            name: the method name peers send.
            fn: called with the request's parameters; its return value is the reply.

        Raises:
            TypeError: ``name`` is not a str or ``fn`` is not callable.
        """
        if not isinstance(name, str):
            raise TypeError(f"method name must be a str, got {type(name).__name__}")
        if not callable(fn):
            raise TypeError(f"handler for {name!r} is not callable: {fn!r}")
        self._fns[name] = fn

    def unregister(self, name: str) -> None:
        """Forget the handler for ``name``.

        Args:
            name: a registered method name.

        Raises:
            KeyError: none was registered.
        """
        del self._fns[name]

    def method(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Decorator registering a function under its own name, or under ``name``.

        Usable bare (``@server.method``) or called (``@server.method(name="add")``).

        Args:
            fn: the function, when used bare.
            name: the method name to register under, instead of the function's own.

        Returns:
            the function unchanged (bare), or a decorator (called with ``name``).
        """
        def decorate(f: F) -> F:
            self.register(name if name is not None else f.__name__, f)
            return f

        return decorate if fn is None else decorate(fn)

    def register_object(self, obj: object, prefix: str = "") -> list[str]:
        """Register every public method of ``obj`` (names not starting with ``_``).

        Args:
            obj: any object; its bound methods become handlers.
            prefix: prepended to each method name (``"calc."`` gives ``calc.add``).

        Returns:
            The names registered.
        """
        names = []
        for attr, value in inspect.getmembers(obj, callable):
            if attr.startswith("_") or inspect.isclass(value):
                continue
            self.register(prefix + attr, value)
            names.append(prefix + attr)
        return names
