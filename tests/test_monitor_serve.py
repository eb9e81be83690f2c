"""dhaga.monitor.serve(): /metrics, /dhagas.json, read-only routes, and the live page in a real
headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest
from conftest import need_program

import dhaga
import dhaga.monitor
from dhaga.sync import Lock, Queue
from dhaga.testing import settle


def get(url: str, method: str = "GET") -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def busy():
    """Dhagas parked on a queue and a lock, and a dashboard showing them."""
    q, lock = Queue(), Lock()

    def fetch_page():
        q.get()

    def write_row():
        with lock:
            pass

    lock.acquire()
    ds = [dhaga.spawn(fetch_page) for _ in range(3)] + [dhaga.spawn(write_row)]
    settle()
    dash = dhaga.monitor.serve()
    yield dash, ds
    dash.stop()
    for d in ds:
        d.kill()
    lock.release()


def test_binds_loopback_and_serves_metrics_in_prometheus_format(busy):
    pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    dash, ds = busy
    assert dash.address[0] == "127.0.0.1"
    base = "http://%s:%d/" % dash.address[:2]
    status, headers, body = get(base + "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert {"dhaga_alive", "dhaga_parked", "dhaga_spawned", "dhaga_blocked",
            "dhaga_loop_lag_seconds"} <= set(fams)
    mine = str(dhaga.get_scheduler().thread_id)
    parked = [s.value for s in fams["dhaga_parked"].samples if s.labels["thread_id"] == mine]
    assert 4 in parked
    assert all(s.name.startswith("dhaga_") for f in fams.values() for s in f.samples)


def test_dhagas_json_lists_the_waits(busy):
    dash, ds = busy
    base = "http://%s:%d/" % dash.address[:2]
    status, headers, body = get(base + "dhagas.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    snap = json.loads(body)
    by_id = {d["id"]: d for d in snap["dhagas"]}
    assert by_id[ds[0]._id]["waits_on"] == "<Queue size=0 maxsize=0>"
    assert by_id[ds[3]._id]["waits_on"].startswith("<Lock locked")
    assert all(d["thread_name"] != "dhaga-dashboard" for d in snap["dhagas"])
    assert any(s["parked"] == 4 for s in snap["schedulers"])


def test_only_reads(busy):
    dash, _ = busy
    base = "http://%s:%d/" % dash.address[:2]
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = get(base + "dhagas.json", method)
        assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert get(base + "nothing-here")[0] == 404
    status, headers, body = get(base)
    assert status == 200 and b"<title>dhaga monitor</title>" in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert b"http://" not in body and b"https://" not in body  # no CDN: all inline



def test_a_hostile_name_cannot_break_out_of_the_page(busy):
    dash, _ = busy
    evil = dhaga.spawn(Queue().get)
    evil.name = "</script><script>alert(1)</script>"
    settle()
    try:
        status, _, body = get("http://%s:%d/" % dash.address[:2])
    finally:
        evil.kill()
    assert status == 200
    assert b"<script>alert(1)" not in body
    embedded = body.split(b'<script id="initial" type="application/json">')[1].split(b"</script>")[0]
    names = {d["name"] for d in json.loads(embedded)["dhagas"]}
    assert "</script><script>alert(1)</script>" in names  # intact once parsed


def test_the_live_page_renders_in_headless_chromium(busy):
    chromium = need_program("chromium")
    dash, ds = busy
    url = "http://%s:%d/" % dash.address[:2]
    with tempfile.TemporaryDirectory() as profile:
        # --timeout (real time), not --virtual-time-budget: an open event stream keeps the
        # page's network busy, and virtual time would never run out.
        cmd = [chromium, "--headless=new", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={profile}", "--timeout=8000", "--dump-dom", url]
        if os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    dom = proc.stdout
    assert 'id="groups"' in dom, proc.stderr[-2000:]
    assert "Waiting for the first snapshot" not in dom  # the events stream arrived
    assert '<span class="t">Queue</span>' in dom and '<span class="t">Lock</span>' in dom
    assert "fetch_page-" in dom and "write_row-" in dom
    assert 'id="c-parked">4<' in dom


def test_events_stream_a_snapshot_per_tick(busy):
    import socket

    dash, ds = busy
    with socket.create_connection(dash.address[:2], timeout=10) as s:
        s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while buf.count(b"data: ") < 2:  # two snapshots, a push period apart
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    assert b"200 OK" in head and b"text/event-stream" in head
    line = next(x for x in body.split(b"\n") if x.startswith(b"data: "))
    snap = json.loads(line[len(b"data: "):])
    assert {d["id"] for d in snap["dhagas"]} >= {d._id for d in ds}


def test_serve_refuses_a_taken_address_clearly():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        with pytest.raises(OSError):
            dhaga.monitor.serve(s.getsockname())
    finally:
        s.close()
