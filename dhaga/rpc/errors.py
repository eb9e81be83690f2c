"""The errors of `dhaga.rpc` that are its own: a call the peer answered with an error.

This module knows only dhaga's shared errors.
"""

from __future__ import annotations

from ..errors import DhagaError

__all__ = ["RemoteError"]


class RemoteError(DhagaError):
    """The remote peer answered a call with an error.

    Attributes:
        error: the peer's error object, exactly as it was sent.
    """

    def __init__(self, error: object) -> None:
        super().__init__(error)
        self.error = error

    @property
    def type(self) -> str | None:
        """The remote exception's type name, when the peer sent ``[type, message]``."""
        if isinstance(self.error, (list, tuple)) and self.error and isinstance(self.error[0], str):
            return self.error[0]
        return None

    def __str__(self) -> str:
        err = self.error
        if isinstance(err, (list, tuple)) and len(err) == 2:
            return f"{err[0]}: {err[1]}"
        return str(err)
