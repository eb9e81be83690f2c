"""dhaga.celery.TaskPool: real Celery workers (subprocesses) on a real redis-server.

Each worker runs tests/celery_app.py's unchanged blocking tasks (time.sleep, requests, redis-py).
"""

from __future__ import annotations

import http.server
import signal
import threading
import time

import pytest
from conftest import REQUIRE_PEERS

try:
    import celery  # noqa: F401
except ImportError:  # pragma: no cover - celery[redis] is in the test extra
    if REQUIRE_PEERS:
        raise
    pytest.skip("peer missing: the celery package", allow_module_level=True)

from celery_worker import celery_app, redis_url, start_worker, store, wait_until  # noqa: E402,F401

from dhaga.celery import _patching  # noqa: E402

pytestmark = [pytest.mark.peer]


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET after 0.5 s, counting how many requests wait at once."""

    lock = threading.Lock()
    in_flight = 0
    peak = 0

    def do_GET(self):  # noqa: N802 - the standard library's name
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.peak = max(cls.peak, cls.in_flight)
        try:
            time.sleep(0.5)
            body = b"slow hello"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            with cls.lock:
                cls.in_flight -= 1

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_http():
    """A threaded HTTP server on a free loopback port whose every answer takes 0.5 s."""
    handler = type("Handler", (_SlowHandler,), {"in_flight": 0, "peak": 0,
                                                 "lock": threading.Lock()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# ---------------------------------------------------------------------- choosing the pool
@pytest.mark.parametrize("argv, environ, selected", [
    (["celery", "-A", "proj", "worker", "-P", "custom"],
     {"CELERY_CUSTOM_WORKER_POOL": "dhaga.celery:TaskPool"}, True),
    (["celery", "-A", "proj", "worker", "--pool=custom"],
     {"CELERY_CUSTOM_WORKER_POOL": "dhaga.celery:TaskPool"}, True),
    (["celery", "-A", "proj", "worker", "-P", "custom"],
     {"CELERY_CUSTOM_WORKER_POOL": "other.pool:Pool"}, False),
    (["celery", "-A", "proj", "worker", "-P", "custom"], {}, False),
    (["-m", "-A", "proj", "worker", "-P", "dhaga"], {}, True),
    (["celery", "worker", "--pool", "dhaga.celery:TaskPool"], {}, True),
    (["celery", "worker", "-Pdhaga"], {}, True),
    (["celery", "-A", "proj", "worker", "-P", "gevent"], {}, False),
    (["celery", "-A", "proj", "worker"], {}, False),
    (["celery", "-A", "proj", "worker", "-P"], {}, False),
    (["celery", "multi", "start", "w1", "-P", "dhaga"], {}, False),
])
def test_which_command_lines_select_the_dhaga_pool(argv, environ, selected):
    assert _patching.selects_dhaga(argv, environ) is selected


# ---------------------------------------------------------------------- throughput
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_300_blocking_tasks_run_at_once_in_one_worker_process(celery_app, start_worker,
                                                              slow_http, store):
    url, handler = slow_http
    worker = start_worker("many", concurrency=1000)
    inside = celery_app.probe.delay().get(timeout=20)
    assert inside["pid"] == worker.pid
    # Patched before Celery, kombu and the app were imported: kombu's poller is the green one.
    assert all(inside[k].startswith("dhaga.") for k in ("socket", "event", "kombu_poll", "sleep"))
    assert inside["consumer_runs_in"] == "top level"  # Celery's main was running before dhaga
    # Copies taken by modules Celery imported before the pool: rebound to the green objects.
    assert all(m.startswith("dhaga.") for m in inside["early_copies"]), inside["early_copies"]

    started = time.monotonic()
    results = [celery_app.sleep_for.delay(0.5) for _ in range(150)]
    results += [celery_app.fetch.delay(url) for _ in range(150)]
    values = [r.get(timeout=60) for r in results]
    elapsed = time.monotonic() - started

    assert values[:150] == [worker.pid] * 150
    assert values[150:] == [[worker.pid, 200, "slow hello"]] * 150
    # The requests waited together (one at a time: 1 in flight). How many overlap depends on
    # how fast Celery's consumer takes messages off Redis, which a loaded machine slows.
    assert handler.peak >= 30, handler.peak
    assert elapsed < 40, elapsed  # one at a time: 300 x 0.5 s = 150 s


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_python_m_dhaga_celery_accepts_P_dhaga(celery_app, start_worker, store):
    worker = start_worker("alias", how="alias", concurrency=200)
    inside = celery_app.probe.delay().get(timeout=20)
    assert inside["pid"] == worker.pid
    assert inside["kombu_poll"].startswith("dhaga.") and inside["event"].startswith("dhaga.")
    assert inside["consumer_runs_in"] == "a dhaga"  # python -m dhaga.celery runs main in one
    results = [celery_app.sleep_for.delay(0.5) for _ in range(100)]
    assert [r.get(timeout=40) for r in results] == [worker.pid] * 100
    stats = worker.inspect().stats()[worker.name]
    assert stats["pool"]["implementation"] == "dhaga.celery._pool:TaskPool"
    assert stats["pool"]["max-concurrency"] == 200
    assert worker.stop() == 0


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_runner_runs_task_after_task_and_ends_after_its_keepalive(celery_app, start_worker,
                                                                    store):
    # -c 1: one runner at most, so each task goes to the runner that ran the previous one.
    worker = start_worker("reuse", concurrency=1, env={"DHAGA_TEST_IDLE_KEEPALIVE": "1"})
    assert [celery_app.count_in_thread_local.delay().get(timeout=20) for _ in range(4)] == [
        1, 2, 3, 4]  # one runner, its thread-locals kept, as a thread of -P threads keeps them

    def pool() -> dict:
        return worker.inspect().stats()[worker.name]["pool"]

    wait_until(lambda: pool()["idle-runners"] == 0, 20, "the idle runner to end", 0.2)
    assert pool()["running"] == 0
    assert celery_app.count_in_thread_local.delay().get(timeout=20) == 1  # a new runner
    assert worker.stop() == 0


def test_the_idle_keepalive_setting_must_be_seconds():
    from dhaga.celery._pool import _seconds

    assert _seconds("2.5") == 2.5 and _seconds(0) == 0.0
    for bad in ("soon", -1, None, float("nan")):
        with pytest.raises(ValueError, match="dhaga_idle_keepalive must be a number"):
            _seconds(bad)


# ---------------------------------------------------------------------- time limits
@pytest.mark.slow
@pytest.mark.timeout(90)
def test_soft_time_limit_is_raised_inside_the_task(celery_app, start_worker, store):
    from celery.exceptions import SoftTimeLimitExceeded

    start_worker("soft", concurrency=50)
    cleaned = celery_app.soft_limited_cleans_up.delay("soft:key")
    uncaught = celery_app.soft_limited.delay(30)
    within = celery_app.soft_limited.delay(0.1)
    assert cleaned.get(timeout=20) == "cleaned up"
    assert store.get("soft:key") == b"cleaned up"
    with pytest.raises(SoftTimeLimitExceeded):
        uncaught.get(timeout=20)
    assert within.get(timeout=20) == "finished"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_hard_time_limit_kills_the_task_and_the_worker_keeps_serving(celery_app, start_worker,
                                                                    store):
    from celery.exceptions import TimeLimitExceeded

    worker = start_worker("hard", concurrency=50)
    busy = [celery_app.sleep_for.delay(2) for _ in range(10)]  # neighbours, not limited
    limited = celery_app.hard_limited.delay("hard:key")
    with pytest.raises(TimeLimitExceeded):
        limited.get(timeout=20)
    assert limited.state == "FAILURE"
    # The task's `except Exception` did not see the kill; its dhaga ran no further.
    assert store.get("hard:key") == b"started"
    assert [r.get(timeout=20) for r in busy] == [worker.pid] * 10
    assert celery_app.sleep_for.delay(0.1).get(timeout=20) == worker.pid
    assert "Hard time limit (1s) exceeded" in worker.output()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_worker_time_limit_options_apply_to_every_task(celery_app, start_worker, store):
    from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

    start_worker("limits", concurrency=50, extra=("--soft-time-limit", "0.5",
                                                  "--time-limit", "1.5"))
    soft = celery_app.sleep_for.delay(30)
    with pytest.raises(SoftTimeLimitExceeded):
        soft.get(timeout=20)
    hard = celery_app.stubborn.delay("stubborn:key")  # survives the soft limit, not the hard
    with pytest.raises(TimeLimitExceeded):
        hard.get(timeout=20)
    assert store.get("stubborn:key") == b"soft limit seen"


# ---------------------------------------------------------------------- revoke
@pytest.mark.slow
@pytest.mark.timeout(90)
def test_revoke_terminate_kills_a_running_task(celery_app, start_worker, store):
    worker = start_worker("revoke", concurrency=50)
    victim = celery_app.wait_for_key.delay("never-set", 60)
    bystander = celery_app.wait_for_key.delay("release", 60)
    wait_until(lambda: store.get("started:never-set") and store.get("started:release"),
               20, "both tasks to start")
    celery_app.app.control.revoke(victim.id, terminate=True)
    wait_until(lambda: victim.state == "REVOKED", 20, "the victim to be revoked")
    active = worker.inspect().active()[worker.name]
    assert [t["id"] for t in active] == [bystander.id]
    store.set("release", 1)
    assert bystander.get(timeout=20) == "released"
    assert celery_app.sleep_for.delay(0.1).get(timeout=20) == worker.pid
    assert store.get("started:never-set") == b"1"  # terminated, not run again


# ---------------------------------------------------------------------- remote control
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ping_inspect_and_heartbeats_answer_while_a_thousand_tasks_wait(celery_app,
                                                                        start_worker, store):
    app = celery_app.app
    worker = start_worker("busy", concurrency=1000, extra=("-E",))
    results = [celery_app.nap.delay(30) for _ in range(1000)]
    wait_until(lambda: int(store.get("napping") or 0) == 1000, 60, "1000 tasks to start", 0.2)

    started = time.monotonic()
    assert app.control.ping(destination=[worker.name], timeout=5) == [{worker.name: {"ok": "pong"}}]
    active = worker.inspect(timeout=10).active()[worker.name]
    assert len(active) == 1000
    stats = worker.inspect(timeout=10).stats()[worker.name]
    assert stats["pool"]["running"] == 1000
    # worker-heartbeat events keep coming (every 2 s) while the tasks wait.
    beats = []

    def on_heartbeat(event):
        beats.append(event)
        receiver.should_stop = len(beats) >= 2

    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"worker-heartbeat": on_heartbeat})
        receiver.capture(limit=None, timeout=15, wakeup=False)
    assert [b["hostname"] for b in beats] == [worker.name] * 2
    assert beats[-1]["active"] == 1000
    assert time.monotonic() - started < 25  # answered while all 1000 still waited
    assert not any(r.ready() for r in results)
    assert worker.stop(signal.SIGQUIT) is not None  # cold: the naps are not waited for


# ---------------------------------------------------------------------- shutdown
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["custom", "alias"])
def test_warm_shutdown_lets_running_tasks_finish_and_loses_none(celery_app, start_worker, store,
                                                                how):
    store.set("durable:seconds", 2)
    first = start_worker("warm", concurrency=20, how=how)
    results = [celery_app.durable.delay(n, 2) for n in range(50)]
    wait_until(lambda: store.scard("durable:started") == 20, 30, "20 tasks running")
    assert first.stop(signal.SIGTERM) == 0  # warm: waits for the 20 running ones
    done_by_first = {int(n) for n in store.smembers("durable:done")}
    assert done_by_first == {int(n) for n in store.smembers("durable:started")}
    assert len(done_by_first) == 20
    # The 30 not started went back to the queue; a new worker runs them, and nothing twice.
    store.set("durable:seconds", 0)
    start_worker("warm2", concurrency=100)
    assert sorted(r.get(timeout=40) for r in results) == list(range(50))
    assert store.scard("durable:done") == 50
    assert int(store.get("durable:runs")) == 50  # each ran once: the 20 finished were acked


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["custom", "alias"])
def test_cold_shutdown_kills_running_tasks_which_are_delivered_again(celery_app, start_worker,
                                                                     store, how):
    store.set("durable:seconds", 60)
    first = start_worker("cold", concurrency=100, how=how)
    results = [celery_app.durable.delay(n, 60) for n in range(30)]
    wait_until(lambda: store.scard("durable:started") == 30, 30, "30 tasks running")
    began = time.monotonic()
    first.stop(signal.SIGQUIT, timeout=20)  # cold: does not wait for the 60 s tasks
    assert time.monotonic() - began < 20
    # Celery stops the pool from its signal handler, on the event loop: no waiting there.
    log = first.log_path.read_text()
    assert "Unrecoverable error" not in log and "BlockingError" not in log, log[-3000:]
    assert store.scard("durable:done") == 0 and not any(r.ready() for r in results)
    # acks_late: none was acknowledged, so every one is delivered again.
    store.set("durable:seconds", 0)
    start_worker("cold2", concurrency=100)
    assert sorted(r.get(timeout=60) for r in results) == list(range(30))
    assert store.scard("durable:done") == 30
    assert int(store.get("durable:runs")) == 60  # 30 killed, 30 run again, none a third time


@pytest.mark.timeout(60)
def test_the_worker_pool_setting_is_refused_with_a_clear_error(celery_app, tmp_path):
    """Chosen by the app's worker_pool setting, the pool would come too late to patch kombu."""
    import os
    import subprocess
    import sys

    from celery_worker import ROOT, TESTS

    env = dict(os.environ, DHAGA_TEST_REDIS=celery_app.app.conf.broker_url,
               DHAGA_TEST_WORKER_POOL="dhaga.celery:TaskPool",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    env.pop("CELERY_CUSTOM_WORKER_POOL", None)
    proc = subprocess.run([sys.executable, "-m", "celery", "-A", "celery_app", "worker",
                           "-n", "late@127.0.0.1", "--without-mingle", "--without-gossip"],
                          cwd=str(TESTS), env=env, capture_output=True, text=True, timeout=50)
    assert proc.returncode != 0
    assert "CELERY_CUSTOM_WORKER_POOL=dhaga.celery:TaskPool" in proc.stdout + proc.stderr
    assert "worker_pool setting" in proc.stdout + proc.stderr
