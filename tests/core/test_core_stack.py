"""A parked dhaga's C stack stays shallow: greenlet copies it out and back at every switch.

All greenlets of a thread run on one C stack, so a switch copies the part of the stack the
dhaga it leaves is using to the heap and copies the other's back (`greenlet`'s
``_stack_saved`` says how much is saved). Python calling Python adds no C stack on CPython
3.11+, but each call made through C (``Context.run``, calling an object with ``__call__``, a
``*args`` call) adds an interpreter frame of several hundred bytes, copied twice per switch.
"""

from __future__ import annotations

import sys

import greenlet
import pytest

import dhaga
from dhaga import net
from dhaga.server import StreamServer
from dhaga.sync import Event

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="CPython 3.10 enters C for every Python call: each frame is on the C stack")

#: Less than one interpreter frame entered from C (about 600-800 bytes on 3.11-3.13).
SLACK = 400


def _plain_greenlet_saved() -> int:
    """What a plain greenlet parked one Python call deep saves."""
    here = greenlet.getcurrent()
    g = greenlet.greenlet(lambda: here.switch())
    g.switch()
    saved = g._stack_saved
    g.switch()  # let it finish
    return saved


def test_a_parked_dhaga_saves_no_more_stack_than_a_plain_greenlet(each_loop):
    ev = Event()
    d = dhaga.spawn(ev.wait)
    dhaga.sleep(0)  # it runs and parks
    saved = d._gr._stack_saved
    ev.set()
    d.join()
    assert saved <= _plain_greenlet_saved() + SLACK


class _Handler:
    """A connection handler that is an object with ``__call__``, as a WSGI handler is."""

    def __init__(self) -> None:
        self.parked: list = []

    def __call__(self, sock, address) -> None:
        self.parked.append(dhaga.current())
        sock.recv(1)  # parked here until the client closes


def test_a_handler_object_parks_as_shallow_as_a_function(each_loop):
    handler = _Handler()
    with StreamServer(("127.0.0.1", 0), handler) as server:
        client = net.create_connection(server.address)
        for _ in range(1000):  # the acceptor, then the handler, run
            if handler.parked:
                break
            dhaga.sleep(0)
        assert handler.parked
        dhaga.sleep(0)  # it reaches the recv and parks
        saved = handler.parked[0]._gr._stack_saved
        client.close()
    assert saved <= _plain_greenlet_saved() + SLACK
