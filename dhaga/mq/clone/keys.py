"""CURVE keys for Clone: socket options for each side, and key files (czmq's certificate format).

This module must not know how Clone uses its sockets; it turns keys into `dhaga.mq.Socket`
options and reads and writes the files the command line takes.
"""

from __future__ import annotations

import os
import re

from ..security import curve_keypair

__all__ = ["curve_options", "write_keys", "read_keys"]


def curve_options(server: tuple[str, str] | None = None,
                  client: tuple[str, str, str] | None = None) -> dict[str, object]:
    """Socket options for a CURVE server (public, secret) or client (server's public, public,
    secret); {} (NULL) for neither."""
    if server:
        return {"curve_server": True, "curve_publickey": server[0],
                "curve_secretkey": server[1]}
    if client:
        return {"curve_serverkey": client[0], "curve_publickey": client[1],
                "curve_secretkey": client[2]}
    return {}


_KEY = re.compile(r'^\s*(public|secret)-key\s*=\s*"([^"]{40})"\s*$', re.M)


def write_keys(path: str) -> tuple[str, str]:
    """Make a key pair; write ``path`` (the public key, to hand out) and ``path + "_secret"``
    (both keys, readable by its owner only), in czmq's certificate format.

    Returns:
        (public, secret), Z85.
    """
    public, secret = curve_keypair()
    with open(path, "w", encoding="ascii") as f:
        f.write(f'#   dhaga.mq CURVE public key\ncurve\n    public-key = "{public}"\n')
    fd = os.open(path + "_secret", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write("#   dhaga.mq CURVE key pair: keep this file secret\ncurve\n"
                f'    public-key = "{public}"\n    secret-key = "{secret}"\n')
    return public, secret


def read_keys(path: str) -> tuple[str, str | None]:
    """Read a key file (ours or czmq's): (public, secret), secret None in a public file.

    Raises:
        ValueError: the file holds no public key.
    """
    with open(path, encoding="ascii") as f:
        found = dict(_KEY.findall(f.read()))
    if "public" not in found:
        raise ValueError(f"{path}: no line public-key = '<40 characters of Z85>'")
    return found["public"], found.get("secret")
