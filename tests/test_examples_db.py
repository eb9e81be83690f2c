"""The database examples run against a throw-away PostgreSQL and print what
docs/databases.md says they print."""

from __future__ import annotations

import importlib.util
import re

import pytest
from conftest import need_peer
from test_examples_core import run_example


def _need(*modules: str) -> None:
    for module in modules:
        need_peer(importlib.util.find_spec(module) is not None, f"the {module} package")


@pytest.mark.peer
def test_db_postgres(postgres_server):
    _need("psycopg")
    out = run_example("db_postgres.py", postgres_server.dsn)
    m = re.search(r"^100 queries of 100 ms in ([\d.]+)s, one OS thread$", out, re.M)
    assert m and float(m.group(1)) < 5  # one at a time: 10 s
    assert "the slow query timed out: dhaga.Timeout" in out
    assert "still running on the server: 0" in out
    assert "the connection still works: 42" in out


@pytest.mark.peer
def test_db_flask_sqlalchemy(postgres_server):
    _need("flask", "sqlalchemy", "psycopg2", "requests")
    out = run_example("db_flask_sqlalchemy.py", postgres_server.url)
    m = re.search(r"100 requests of a 100 ms query through a pool of (\d+) connections "
                  r"in ([\d.]+)s", out)
    assert m and int(m.group(1)) == 10 and float(m.group(2)) < 5  # one at a time: 10 s
