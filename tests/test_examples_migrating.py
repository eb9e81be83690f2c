"""The migration guides' examples: each "before" program and its dhaga twin print the same.

The gevent and eventlet programs run against the real libraries (both in the test extra), so
the guides' tables are checked against what those libraries actually do, not against memory.
"""

from __future__ import annotations

import importlib.util

import pytest
from conftest import need_peer
from test_examples_core import run_example

GEVENT_OUTPUT = """\
joinall: [0, 1, 4, 9, 16]
pool.map: [0, 1, 4, 9, 16]
imap_unordered: [0, 1, 4, 9, 16]
timeout: the block expired
queue: [0, 1, 2]
event set: True
locked total: 10
worker: cleaning up
worker dead: True
echo: HELLO
ten 0.2 s sleeps overlapped: True
"""

EVENTLET_OUTPUT = """\
spawn: 49
spawn_n: [0, 1, 4]
spawn_after: 9
pool.imap: [0, 1, 4, 9, 16]
pile: [0, 1, 4, 9, 16]
timeout: the block expired
tpool: 45
echo: HELLO
wsgi: 200 hello from /wsgi
ten 0.2 s sleeps overlapped: True
"""


def test_gevent_program_moved_to_dhaga_prints_the_same():
    assert run_example("migrate_gevent_after.py") == GEVENT_OUTPUT


@pytest.mark.peer
def test_gevent_program_itself_prints_it():
    need_peer(importlib.util.find_spec("gevent") is not None, "the gevent library")
    assert run_example("migrate_gevent_before.py") == GEVENT_OUTPUT


def test_eventlet_program_moved_to_dhaga_prints_the_same():
    assert run_example("migrate_eventlet_after.py") == EVENTLET_OUTPUT


@pytest.mark.peer
def test_eventlet_program_itself_prints_it():
    need_peer(importlib.util.find_spec("eventlet") is not None, "the eventlet library")
    assert run_example("migrate_eventlet_before.py") == EVENTLET_OUTPUT


def test_asyncio_app_moves_its_blocking_library_into_dhagas():
    out = run_example("migrate_asyncio.py")
    users = [f"user-{i}" for i in range(10)]
    users[3] = "user-3:cached"  # answered by the async cache, through dhaga.wait
    assert f"results: {users}" in out
    assert "10 blocking calls of 0.2 s overlapped: True" in out
    assert "the loop kept running: True" in out
    assert "every call ran on the loop's own thread: True" in out
