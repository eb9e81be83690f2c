"""A WSGI app for test_web_cli: ``/wedge`` blocks the whole OS thread on a real lock."""

import sys

from dhaga import monkey

_real_lock = monkey.original("threading", "Lock")()  # real even when threading is patched


def app(environ, start_response):
    if environ["PATH_INFO"] == "/wedge":
        sys.stderr.write("wedging\n")
        sys.stderr.flush()
        _real_lock.acquire()
        _real_lock.acquire()  # never returns: the loop and every dhaga are stuck
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
