"""The WSGI environ of a parsed request head (PEP 3333), as a pure function: `environ_for`.

It sits beside the head parser (`dhaga.web.protocol`) and follows RFC 9112 for the target:
an absolute-form target (``GET http://host/p``) gives the host instead of the ``Host`` field
(section 3.2.2); schemes other than http and https, an empty host and user information are
refused with 400. ``CONTENT_LENGTH`` is the one value the head's ``Content-Length`` fields
stand for (two equal fields collapse, as h11 does; `parse_head` refused different ones).

This module must not know about sockets, dhagas or the request body: a head and a dict in,
a dict out.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from .protocol import RequestError, RequestHead

__all__ = ["environ_for", "split_target"]

_env_keys: dict[str, str | None] = {}
_ENV_KEYS_MAX = 2048
_SCHEMES = frozenset(("http", "https"))


def _env_key(name: str) -> str | None:
    """``Content-Type`` -> ``CONTENT_TYPE``, ``X-Id`` -> ``HTTP_X_ID``; None for names with '_'.

    A name with an underscore would land on the same key as its dashed twin, letting a client
    forge a header a proxy vouches for (``X_Forwarded_For`` for ``X-Forwarded-For``): dropped.
    """
    key = _env_keys.get(name, "")
    if key != "":
        return key
    if "_" in name:
        key = None
    else:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
    if len(_env_keys) < _ENV_KEYS_MAX:
        _env_keys[name] = key
    return key


def split_target(target: str) -> tuple[str | None, str]:
    """``(host, origin-form)`` of a request target; host is None unless it is absolute-form.

    ``/p?q`` -> ``(None, "/p?q")``; ``http://h:81/p?q`` -> ``("h:81", "/p?q")``; ``*`` stays.

    Raises:
        RequestError: 400 for a scheme other than http or https, an empty host, user
            information in the authority, or a target of no form HTTP/1.1 defines.
    """
    if target[0] == "/":
        return None, target
    if target == "*":
        return None, "*"
    scheme, sep, rest = target.partition("://")
    if not sep or not scheme.isascii() or not scheme.isalpha():
        raise RequestError(400, f"malformed request target {target[:100]!r}")
    if scheme.lower() not in _SCHEMES:
        raise RequestError(400, f"unsupported scheme {scheme[:20]!r} in the request target")
    end = len(rest)
    for c in "/?":
        i = rest.find(c)
        if 0 <= i < end:
            end = i
    host = rest[:end]
    if not host or "@" in host:
        raise RequestError(400, f"malformed host in the request target {target[:100]!r}")
    path = rest[end:]
    return host, path if path[:1] == "/" else "/" + path


def environ_for(req: RequestHead, base: dict[str, Any]) -> dict[str, Any]:
    """The WSGI environ of a request: a copy of ``base`` with the request's keys added.

    ``wsgi.input`` is the caller's to add. ``PATH_INFO`` is the percent-decoded path as latin-1
    text, ``QUERY_STRING`` stays encoded; repeated fields are joined with "," (cookies with
    "; "); field names with an underscore are dropped.

    Raises:
        RequestError: 400 for a request target `split_target` refuses.
    """
    target = req.target
    if target[0] == "/":  # origin form: nearly every request
        host, origin = None, target
    else:
        host, origin = split_target(target)
    env = base.copy()
    env["REQUEST_METHOD"] = req.method
    env["RAW_URI"] = env["REQUEST_URI"] = target
    env["SERVER_PROTOCOL"] = req.version
    path, _, query = origin.partition("?")
    env["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
    env["QUERY_STRING"] = query
    keys = _env_keys
    for name, value in req.fields:
        key = keys.get(name, "") or _env_key(name)
        if key is None:
            continue
        if key in env:
            env[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
        else:
            env[key] = value
    if req.content_length is not None:
        env["CONTENT_LENGTH"] = str(req.content_length)  # "5, 5" or two fields: one value
    if host is not None:
        env["HTTP_HOST"] = host  # the target's host wins over the Host field
    return env
