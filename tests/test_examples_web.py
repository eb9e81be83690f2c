"""Every web example runs, and prints what docs/web.md says it prints."""

from __future__ import annotations

import re
import threading

import pytest
from test_examples_core import run_example


def test_web_hello():
    out = run_example("web_hello.py")
    assert re.search(r"^serving on http://127\.0\.0\.1:\d+$", out, re.M)
    assert "100 requests answered, each waited 100 ms" in out and "stopped" in out


def test_web_flask_requests():
    pytest.importorskip("flask")
    pytest.importorskip("requests")
    out = run_example("web_flask_requests.py")
    assert "200 Flask requests, each calling a 0.5s backend with requests" in out


def test_web_tornado_websocket():
    out = run_example("web_tornado_websocket.py")
    assert "quote: {'item': 'apple', 'price': 3}" in out
    assert "quote: {'item': 'plum', 'price': 0}" in out
    assert out.endswith("alice got: welcome to lobby: 1 here\nbob got: welcome to lobby: 2 here\n"
                        "bob got: lobby: hello, bob\nalice got: delivered to 1\n")


def test_web_processes():
    out = run_example("web_processes.py")
    assert "(2 processes, pid MASTER)" in out
    assert "2 different workers answered" in out
    assert "exit status after SIGTERM: 0" in out


def test_web_gunicorn():
    pytest.importorskip("gunicorn")
    out = run_example("web_gunicorn.py")
    assert "50 requests of 200 ms each, one worker process (1 pid)" in out
    assert "gunicorn exit status: 0" in out


def test_the_demos_web_part():
    from dhaga.demo.web import part_web

    threads_before = threading.active_count()
    figures = part_web(clients=300, latency=0.2)
    assert figures["clients"] == 300
    assert figures["total"] == sum(i * i for i in range(300))
    # all 300 requests were waiting in the server at the same moment
    assert figures["peak_in_flight"] == 300
    assert figures["threads"] == threads_before + 1  # the server's thread, nothing more
