"""ZMTP socket types: which exist, which may talk to each other, and how to refuse a misfit.

This module must not know about bytes or connection state: it judges the Socket-Type names a
READY carries, and what a socket layer then does about a misfit is its own affair.
"""

from __future__ import annotations

#: The socket types a ZMTPConnection can announce, spelled as on the wire.
SOCKET_TYPES = frozenset(
    {"PAIR", "PUB", "SUB", "REQ", "REP", "DEALER", "ROUTER", "PULL", "PUSH", "XPUB", "XSUB"}
)

# The valid pairs of RFC 28-31 (and libzmq's mechanism_t::check_socket_type), either way round.
_VALID_PAIRS = frozenset(
    frozenset(pair.split("-"))
    for pair in "REQ-REP REQ-ROUTER DEALER-REP DEALER-DEALER DEALER-ROUTER ROUTER-ROUTER PUB-SUB "
    "PUB-XSUB XPUB-SUB XPUB-XSUB PUSH-PULL PAIR-PAIR".split()
)
_IDENTITY_TYPES = frozenset({"REQ", "DEALER", "ROUTER"})  # libzmq 4.3 sends Identity for these


def compatible(ours: str, theirs: str) -> bool:
    """Tell whether two socket types may talk to each other (RFC 28-31, libzmq).

    Args:
        ours: our socket type, e.g. ``"REQ"``.
        theirs: the peer's Socket-Type exactly as sent (case matters, as in libzmq).

    Returns:
        True for the valid pairs (REQ-REP, REQ-ROUTER, DEALER-REP, DEALER-DEALER, DEALER-ROUTER,
        ROUTER-ROUTER, PUB-SUB, PUB-XSUB, XPUB-SUB, XPUB-XSUB, PUSH-PULL, PAIR-PAIR).
    """
    return frozenset((ours, theirs)) in _VALID_PAIRS


def mismatch_reason(ours: str, theirs: str) -> str:
    """Build the ERROR reason for a peer whose socket type does not fit ours.

    The reason is printable ASCII without spaces (the grammar's VCHAR), well under 255 bytes,
    e.g. ``"Incompatible-Socket-Type:PUSH-cannot-talk-to-PUSH"``. (libzmq itself sends no ERROR
    on a mismatch: it just closes the connection.)

    Args:
        ours: our socket type, such as ``"PUSH"``.
        theirs: the peer's socket type.

    Returns:
        the reason text.
    """
    clean = "".join(c if "!" <= c <= "~" else "?" for c in theirs[:64])
    return f"Incompatible-Socket-Type:{ours}-cannot-talk-to-{clean}"
