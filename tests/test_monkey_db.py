"""Database drivers and subprocess under dhaga.monkey.patch_all(), against real servers.

Each scenario runs patched in a child process (tests/scripts/db_drivers.py); the servers are
the session fixtures of conftest.py.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import need_peer
from test_monkey import run_child

N = 50  # concurrent queries of 0.2 s each in the child


def _need(module: str) -> None:
    need_peer(importlib.util.find_spec(module) is not None, f"the {module} package")


def _check_concurrent(r: dict) -> None:
    assert r["ok"] == N
    assert r["elapsed"] < 0.2 * N / 4  # serially 10 s; concurrently about 0.25 s
    assert r["ticks"] >= 5  # the loop kept running other dhagas meanwhile
    assert r["threads"] <= 2  # one OS thread (+ at most the resolver's worker)


def _check_interruptions(r: dict, states: set[str]) -> None:
    assert r["timeout_raised"] == "dhaga.errors.Timeout"  # not a driver error
    assert r["timeout_after"] < 2.0  # the 5 s query was abandoned
    assert r["kill_raised"] == "Killed"
    assert r["active_after_timeout"] == 0 and r["active_after_kill"] == 0  # cancelled on server
    assert r["state_after_timeout"] in states and r["state_after_kill"] in states


@pytest.mark.peer
@pytest.mark.timeout(90)
def test_psycopg2_is_cooperative_resolves_off_the_loop_and_cancels(postgres_server):
    _need("psycopg2")
    r = run_child("db_drivers.py", "psycopg2", json.dumps({"dsn": postgres_server.dsn}))
    assert r["wait_callback"] == "dhaga._monkey.db_drivers"
    _check_concurrent(r)
    assert r["fds_left"] <= 0  # closed connections leave no registered duplicate behind
    assert r["by_name"] == "127.0.0.1"  # "localhost" reached libpq as a resolved hostaddr
    _check_interruptions(r, {"closed"})  # psycopg2 closes a connection whose wait failed


@pytest.mark.peer
@pytest.mark.timeout(90)
@pytest.mark.parametrize("impl", ["binary", "python"])
def test_psycopg3_with_and_without_c_speedups_is_cooperative_and_cancels(
        postgres_server, impl, monkeypatch):
    _need("psycopg")
    if impl == "binary":
        _need("psycopg_binary")
    monkeypatch.setenv("PSYCOPG_IMPL", impl)  # psycopg uses exactly this implementation
    r = run_child("db_drivers.py", "psycopg3", json.dumps({"params": postgres_server.params}))
    assert r["impl"] == impl
    assert r["wait_func"] == "dhaga._monkey.db_drivers"  # not psycopg's C wait_c
    _check_concurrent(r)
    _check_interruptions(r, {"usable"})


@pytest.mark.peer
@pytest.mark.timeout(90)
def test_pymysql_is_cooperative_and_kills_interrupted_queries(mariadb_server):
    _need("pymysql")
    r = run_child("db_drivers.py", "pymysql", json.dumps({"params": mariadb_server.params}))
    _check_concurrent(r)
    _check_interruptions(r, {"closed"})


def test_subprocess_waits_park_the_dhaga():
    r = run_child("db_drivers.py", "subprocess", "{}")
    assert r["outputs"] == ["done"] * 3 and r["wait_status"] == 0
    assert r["elapsed"] < 1.4  # three 0.5 s children at once, then one: ~1 s; serially 2 s
    assert r["ticks"] >= 40  # ~100 expected: the loop was never stalled for long
    assert r["timeout"] == "TimeoutExpired"
    assert r["communicate"] == "done"  # the one-pipe communicate() path


@pytest.mark.peer
def test_patch_psycopg_alone_makes_both_drivers_cooperative(postgres_server):
    _need("psycopg2")
    _need("psycopg")
    r = run_child("db_psycopg_alone.py", postgres_server.dsn)
    assert r["sum"] == 50  # ten of each driver
    assert r["elapsed"] < 2  # twenty 0.2 s queries at once; one at a time 4 s
    assert not r["socket_patched"] and not r["threading_patched"]
