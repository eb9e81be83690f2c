"""The ZAP handler (RFC 27): `Authenticator` judges the peers of every secured socket of the
process, by address, PLAIN username and password, or CURVE public key, per domain.

This module must not know about connections or the wire: it answers ZAP requests (lists of
frames) with ZAP replies, and dhaga.mq.security asks it.
"""

from __future__ import annotations

import hmac
import logging
import threading
from typing import Iterable, Mapping, Optional

from ..codecs import z85

__all__ = ["Authenticator", "CURVE_ALLOW_ANY", "running"]

log = logging.getLogger("dhaga.mq.auth")

#: Give `Authenticator.configure_curve` this instead of a set of keys to accept any client key
#: (the connection is still encrypted, and the server still proven by its key).
CURVE_ALLOW_ANY = "*"

_lock = threading.Lock()
_running: Optional[Authenticator] = None


def running() -> Optional[Authenticator]:
    """The Authenticator answering ZAP requests in this process, if one was started."""
    return _running


def _raw_key(key: str | bytes) -> bytes:
    raw = key.encode("ascii", "replace") if isinstance(key, str) else bytes(key)
    if len(raw) == 40:
        return z85.decode(raw)
    if len(raw) == 32:
        return raw
    raise ValueError(f"a CURVE public key is 40 characters of Z85 or 32 raw bytes, not {key!r}")


class Authenticator:
    """Answers ZAP for the secured sockets of this process (libzmq's ZAP handler, in process).

    Addresses first: with an allow list, only its addresses get through; else the deny list
    turns its addresses away. Then the mechanism: NULL passes (it has no credentials); PLAIN
    needs a username and password configured for the socket's ``zap_domain`` (or ``"*"``);
    CURVE needs the client's public key among the domain's keys, or `CURVE_ALLOW_ANY`.
    Without a running Authenticator (as libzmq without a ZAP handler) a CURVE server lets any
    client key in (still encrypting, still proving the server) and a PLAIN server refuses all.

    Use it as a context manager, or `start` and `stop` it. It may be configured while running;
    the sockets of every OS thread consult it.
    """

    def __init__(self) -> None:
        self._allow: frozenset[str] = frozenset()
        self._deny: frozenset[str] = frozenset()
        self._passwords: dict[str, dict[bytes, bytes]] = {}
        self._curve: dict[str, frozenset[bytes] | str] = {}

    def __enter__(self) -> Authenticator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ configuring
    def allow(self, *addresses: str) -> None:
        """Let only these IP addresses (and those of other `allow` calls) through."""
        self._allow = self._allow | frozenset(addresses)

    def deny(self, *addresses: str) -> None:
        """Turn these IP addresses away (ignored while an allow list exists, as in pyzmq)."""
        self._deny = self._deny | frozenset(addresses)

    def configure_plain(self, domain: str = "*",
                        passwords: Optional[Mapping[str | bytes, str | bytes]] = None) -> None:
        """Accept PLAIN clients of ``domain`` whose username and password are in ``passwords``
        (replacing the domain's earlier set; None or {} refuses every PLAIN client there)."""
        table = {_bytes(user): _bytes(pw) for user, pw in (passwords or {}).items()}
        self._passwords = {**self._passwords, domain: table}

    def configure_curve(self, domain: str = "*",
                        keys: Iterable[str | bytes] | str = CURVE_ALLOW_ANY) -> None:
        """Accept CURVE clients of ``domain`` whose public key (Z85 or raw) is in ``keys``, or
        any client with `CURVE_ALLOW_ANY`.

        Raises:
            ValueError: a key is neither 40 characters of Z85 nor 32 raw bytes.
        """
        allowed = keys if isinstance(keys, str) and keys == CURVE_ALLOW_ANY else frozenset(
            _raw_key(k) for k in keys)
        self._curve = {**self._curve, domain: allowed}

    # ------------------------------------------------------------------ running
    def start(self) -> Authenticator:
        """Answer the ZAP requests of this process's sockets from now on.

        Raises:
            RuntimeError: another Authenticator is running.
        """
        global _running
        with _lock:
            if _running is not None and _running is not self:
                raise RuntimeError("another dhaga.mq.Authenticator is running in this process")
            _running = self
        return self

    def stop(self) -> None:
        """Stop answering (secured servers then accept everyone again, as libzmq)."""
        global _running
        with _lock:
            if _running is self:
                _running = None

    # ------------------------------------------------------------------ answering
    def handle(self, request: list[bytes]) -> list[bytes]:
        """Answer one ZAP request (RFC 27) with its reply.

        Args:
            request: version ``1.0``, request id, domain, address, identity, mechanism, then
                the credentials (PLAIN: username, password; CURVE: the 32-byte public key).

        Returns:
            version, request id, status code (``200`` or ``400``; ``500`` for a malformed
            request), status text, user id, metadata (empty).
        """
        if len(request) < 6 or request[0] != b"1.0":
            return [b"1.0", request[1] if len(request) > 1 else b"", b"500",
                    b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _identity, mechanism, *credentials = request
        code, text, user = self._verdict(domain.decode("utf-8", "replace"),
                                         address.decode("ascii", "replace"),
                                         mechanism.decode("ascii", "replace"), credentials)
        if code != "200":
            log.info("ZAP: refused %s client from %r (domain %r): %s", mechanism.decode(
                "ascii", "replace"), address.decode("ascii", "replace"), domain, text)
        return [version, request_id, code.encode(), text.encode(), user, b""]

    def _verdict(self, domain: str, address: str, mechanism: str,
                 credentials: list[bytes]) -> tuple[str, str, bytes]:
        if self._allow:
            if address not in self._allow:
                return "400", "address not in the allow list", b""
        elif address in self._deny:
            return "400", "address denied", b""
        if mechanism == "NULL":
            return "200", "OK", b""
        if mechanism == "PLAIN":
            table = self._passwords.get(domain, self._passwords.get("*"))
            if len(credentials) != 2 or not table:
                return "400", "no PLAIN passwords for this domain", b""
            user, password = credentials
            if user in table and _same(table[user], password):
                return "200", "OK", user
            return "400", "invalid username or password", b""
        if mechanism == "CURVE":
            allowed = self._curve.get(domain, self._curve.get("*"))
            if len(credentials) != 1 or allowed is None:
                return "400", "no CURVE keys for this domain", b""
            key = credentials[0]
            if allowed == CURVE_ALLOW_ANY or key in allowed:
                return "200", "OK", z85.encode(key).encode() if len(key) == 32 else b""
            return "400", "unknown CURVE public key", b""
        return "400", f"unsupported mechanism {mechanism!r}", b""


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
