"""The live dashboard: ``dhaga.monitor.serve()`` on a small, busy program.

A toy service: fetchers waiting on a job queue, clients waiting on sockets, writers queued on
a lock, a cron dhaga sleeping, and a report handler that now and then blocks its thread with a
plain ``time.sleep``. Open the printed address in a browser: dhagas grouped by what they wait
on, the loop lag chart with a spike at each blocking episode, and the episodes with the line
that blocked. ``/metrics`` is for Prometheus, ``/dhagas.json`` for scripts.

    python examples/monitor_dashboard.py --seconds 120
"""

import argparse
import json
import time
import urllib.request

import dhaga
import dhaga.monitor
import dhaga.net
from dhaga.sync import Event, Lock, Queue

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=0, help="keep serving this long")
args = ap.parse_args()

monitor = dhaga.monitor.start(block_threshold=0.05)
dashboard = dhaga.monitor.serve(("127.0.0.1", 0))
url = "http://%s:%d/" % dashboard.address[:2]
print(f"dashboard: {url}", flush=True)

jobs, db_lock, shutdown = Queue(), Lock(), Event()
listener = dhaga.net.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()


def fetch_page(n):
    while True:
        jobs.get()


def handle_client(n):
    sock = dhaga.net.create_connection(listener.getsockname())
    sock.recv(100)  # the peer never answers


def accept_loop():
    held = []
    while True:
        held.append(listener.accept()[0])


def write_row(n):
    with db_lock:
        pass


def nightly_cron():
    while True:
        dhaga.sleep(3600)


def render_report(ms):
    time.sleep(ms / 1000)  # not cooperative: this holds the thread


def get(path):
    with urllib.request.urlopen(url + path, timeout=10) as r:
        return r.read().decode()


def main():
    dhaga.spawn(accept_loop)
    for n in range(12):
        dhaga.spawn(fetch_page, n)
    for n in range(6):
        dhaga.spawn(handle_client, n)
    db_lock.acquire()  # a long transaction: writers queue up
    for n in range(4):
        dhaga.spawn(write_row, n)
    dhaga.spawn(nightly_cron)
    for _ in range(3):
        dhaga.spawn(shutdown.wait)
    dhaga.spawn(render_report, 150).join()
    dhaga.sleep(0.1)  # the probe runs again: the episode is over
    metrics = dhaga.to_thread(get, "metrics")
    print("metrics:", next(line for line in metrics.splitlines()
                           if line.startswith("dhaga_parked{")))
    snap = json.loads(dhaga.to_thread(get, "dhagas.json"))
    waits = sorted({d["waits_on"].split(" ")[0] for d in snap["dhagas"] if d["waits_on"]})
    print(f"dhagas.json: {snap['total_dhagas']} dhagas; waits on {', '.join(waits)}")
    ep = snap["episodes"][-1]
    print(f"episode: {ep['dhaga']} blocked for {ep['duration']:.2f}s at {ep['where']}")
    page = dhaga.to_thread(get, "")
    print("page:", "EventSource" in page and "<title>dhaga monitor</title>" in page)
    deadline = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < deadline:
        dhaga.sleep(2)
        n += 1
        if n % 4 == 0:
            dhaga.spawn(render_report, 60 + 40 * (n % 5)).join()


dhaga.run(main)
dashboard.stop()
monitor.stop()
