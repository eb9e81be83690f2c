"""ZeroMQ-style messaging for dhagas over ZMTP 3.x: sockets, a poller, a proxy, security.

A `Socket` of any of libzmq's eleven types talks to libzmq sockets over ``tcp://`` and
``ipc://`` (ZMTP 3.1, 3.0 peers accepted; NULL, PLAIN or CURVE security, judged by an
`Authenticator`) and to other dhaga sockets of the same thread over ``inproc://``. This package
must not know how the scheduler works inside.
"""

from .auth import CURVE_ALLOW_ANY, Authenticator
from .errors import BadState, HostUnreachable, MQError, NotSupported, SocketClosed
from .options import OPTIONS
from .poller import POLLIN, POLLOUT, Poller
from .proxy import proxy
from .security import curve_keypair, z85_decode, z85_encode
from .socket import KINDS, Socket

REQ = "REQ"
REP = "REP"
DEALER = "DEALER"
ROUTER = "ROUTER"
PUB = "PUB"
SUB = "SUB"
XPUB = "XPUB"
XSUB = "XSUB"
PUSH = "PUSH"
PULL = "PULL"
PAIR = "PAIR"

__all__ = [
    "Socket", "Poller", "proxy", "POLLIN", "POLLOUT", "KINDS", "OPTIONS",
    "REQ", "REP", "DEALER", "ROUTER", "PUB", "SUB", "XPUB", "XSUB", "PUSH", "PULL", "PAIR",
    "MQError", "BadState", "HostUnreachable", "NotSupported", "SocketClosed",
    "Authenticator", "CURVE_ALLOW_ANY", "curve_keypair", "z85_encode", "z85_decode",
]  # fmt: skip
